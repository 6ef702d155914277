"""Any frame shape is answered or refused: a property-based sweep of heights and widths from 1
to 8192 pixels, every supported encoding and padded or wrong steps, through the converter and
``LensSegmenter`` (tiny preset): a ``Segmentation`` or a ``LensError``, never another exception.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lens_ros.conversions.image import ENCODINGS, image_to_rgb
from lens_ros.core import BadImageError, LensError, Segmentation
from lens_ros.model.processing import MAX_ASPECT, check_frame_shape, smart_resize

SIDES = st.integers(1, 8192)
_SETTINGS = dict(deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class _Msg:
    """The fields of a sensor_msgs/Image (the converter is duck-typed)."""

    def __init__(self, height, width, encoding, step, data, is_bigendian=0):
        self.height, self.width, self.encoding, self.step = height, width, encoding, step
        self.data, self.is_bigendian = data, is_bigendian


@settings(max_examples=400, **_SETTINGS)
@given(h=SIDES, w=SIDES, lo=st.sampled_from([3136, 12544]),
       hi=st.sampled_from([112 * 112, 448 * 448, 1_000_000, 12_845_056]))
def test_smart_resize_stays_inside_the_processor_bounds(h, w, lo, hi):
    try:
        check_frame_shape(h, w)
    except BadImageError:
        assert max(h, w) / min(h, w) > MAX_ASPECT
        return
    rh, rw = smart_resize(h, w, 28, lo, hi)
    assert rh % 28 == 0 and rw % 28 == 0 and rh * rw <= hi
    assert max(rh, rw) / min(rh, rw) <= MAX_ASPECT


@st.composite
def image_messages(draw, max_side=8192, max_bytes=4_000_000):
    """Image-like messages: any encoding name, sides 1..max_side, right or wrong step and data."""
    enc = draw(st.sampled_from(sorted(ENCODINGS) + ["bayer_rggb8", "", "jpeg"]))
    h, w = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    e = ENCODINGS.get(enc)
    row = w * (e.channels * e.dtype.itemsize if e else 3)
    pad = draw(st.sampled_from([0, 0, 0, 1, 4, -1]))
    step = max(0, row + pad)
    size = step * h
    if size > max_bytes:  # keep memory bounded: shrink the tall side, keep the aspect extreme
        h = max(1, max_bytes // max(step, 1))
        size = step * h
    cut = draw(st.sampled_from([0, 0, 0, 1, size]))  # truncated data (or none at all)
    data = np.random.default_rng(h * 8193 + w).integers(0, 256, max(0, size - cut),
                                                        dtype=np.uint8).tobytes()
    return _Msg(h, w, enc, step, data)


@settings(max_examples=300, **_SETTINGS)
@given(msg=image_messages())
def test_converter_gives_rgb_or_a_bad_image_error(msg):
    try:
        rgb = image_to_rgb(msg)
    except LensError as err:
        assert str(err)
        return
    assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3)


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir):
    from lens_ros.model import LensSegmenter

    return LensSegmenter.from_pretrained(str(tiny_model_dir), max_new_tokens=2)


def test_segmenter_answers_or_refuses_any_shape(segmenter):
    """Drawn through hypothesis inside the test so the module-scoped segmenter is reused."""
    seen = {"answered": 0, "refused": 0}

    @settings(max_examples=40, **_SETTINGS)
    @given(h=SIDES, w=st.one_of(SIDES, st.integers(1, 40)),  # thin frames are drawn often too
           channels=st.sampled_from([None, 1, 3, 4]))
    def one(h, w, channels):
        if h * w > 16_000_000:  # 8192x8192 frames are fine too, but keep memory and time small
            h = max(1, 16_000_000 // w)
        shape = (h, w) if channels is None else (h, w, channels)
        rgb = np.full(shape, 90, np.uint8)
        served = max(h, w) / min(h, w) <= MAX_ASPECT
        try:
            segmenter.set_image(rgb)
            result = segmenter.segment("the object", reasoning=False)
        except LensError as err:
            assert not served, f"{w}x{h} is inside the shape policy but was refused: {err}"
            assert isinstance(err, BadImageError) and "aspect ratio" in str(err)
            seen["refused"] += 1
            return
        assert served and isinstance(result, Segmentation)
        assert result.mask.shape == (h, w)
        seen["answered"] += 1

    one()
    print(f"\nshape sweep through LensSegmenter: {seen['answered']} answered, {seen['refused']} "
          "refused BAD_IMAGE (aspect ratio), 0 other exceptions")


@pytest.mark.parametrize("h, w", [(60, 1280), (64, 2048), (100, 3000), (200, 4000), (28, 1000),
                                  (5, 1000), (1, 200), (8192, 41), (1, 1)])
def test_thin_frames_of_the_report_are_answered(segmenter, h, w):
    segmenter.set_image(np.full((h, w, 3), 120, np.uint8))
    assert segmenter.segment("the object", reasoning=False).mask.shape == (h, w)
