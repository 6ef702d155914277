"""Round trips of lens_ros.conversions.image over every encoding, with pixel comparison."""
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from lens_ros.core import BadImageError
from lens_ros.conversions.image import (ENCODINGS, ImageConversionError, image_to_depth_m,
                                           image_to_mask, image_to_numpy, image_to_rgb,
                                           mask_to_image, numpy_to_image, rgb_to_image)

SIZES = [(1, 1), (7, 13), (480, 640), (3, 1281)]


def _random(encoding, h, w, rng):
    enc = ENCODINGS[encoding]
    shape = (h, w) if enc.channels == 1 else (h, w, enc.channels)
    if enc.dtype == np.float32:
        return rng.random(shape, dtype=np.float32) * 10
    return rng.integers(0, np.iinfo(enc.dtype).max, shape, dtype=enc.dtype, endpoint=True)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("h, w", SIZES)
def test_roundtrip_every_encoding(encoding, h, w):
    if ENCODINGS[encoding].channels == 2 and w % 2:
        w += 1  # packed YUV 4:2:2 needs an even width
    arr = _random(encoding, h, w, np.random.default_rng(h * 1000 + w))
    msg = numpy_to_image(arr, encoding)
    assert (msg.height, msg.width, msg.encoding) == (h, w, encoding)
    assert msg.step * msg.height == len(msg.data)
    back = image_to_numpy(msg)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert np.array_equal(back, arr)


def _padded(arr, encoding, pad, bigendian=False):
    """An Image-like message whose rows carry `pad` bytes of padding."""
    h, w = arr.shape[:2]
    data = arr.astype(arr.dtype.newbyteorder(">")) if bigendian else arr
    rows = np.ascontiguousarray(data).view(np.uint8).reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                           step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "mono16", "32FC1", "rgba8"])
def test_padded_step_is_honoured(encoding):
    arr = _random(encoding, 5, 9, np.random.default_rng(1))
    assert np.array_equal(image_to_numpy(_padded(arr, encoding, pad=7)), arr)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_big_endian_is_converted_to_native(encoding):
    arr = _random(encoding, 4, 6, np.random.default_rng(2))
    out = image_to_numpy(_padded(arr, encoding, pad=0, bigendian=True))
    assert out.dtype.isnative and np.array_equal(out, arr)


def test_rgb_views_of_colour_encodings():
    rgb = _random("rgb8", 6, 10, np.random.default_rng(3))
    assert np.array_equal(image_to_rgb(rgb_to_image(rgb)), rgb)
    assert np.array_equal(image_to_rgb(numpy_to_image(rgb[..., ::-1].copy(), "bgr8")), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(image_to_rgb(numpy_to_image(rgba, "rgba8")), rgb)
    bgra = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(image_to_rgb(numpy_to_image(bgra, "bgra8")), rgb)
    gray = rgb[..., 0].copy()
    assert np.array_equal(image_to_rgb(numpy_to_image(gray, "mono8")), np.dstack([gray] * 3))
    g16 = gray.astype(np.uint16) << 8
    assert np.array_equal(image_to_rgb(numpy_to_image(g16, "mono16")), np.dstack([gray] * 3))


def test_yuv422_decodes_grey_exactly():
    # Y=128, U=V=128 is grey in BT.601 limited range: (128-16)*255/219 = 130.4.
    # UYVY and YUYV carry the same bytes here, so both orders must decode to it.
    yuv = np.full((2, 4, 2), 128, np.uint8)
    for enc in ("yuv422", "yuyv"):
        rgb = image_to_rgb(numpy_to_image(yuv, enc))
        assert rgb.shape == (2, 4, 3) and np.all(np.abs(rgb.astype(int) - 130) <= 1)
    # A bright luma with neutral chroma in YUYV order (Y0 U Y1 V) must stay neutral and bright.
    yuyv = np.array([[[235, 128], [235, 128]]], np.uint8)
    rgb = image_to_rgb(numpy_to_image(yuyv, "yuyv"))
    assert np.all(rgb >= 250)


def test_mask_roundtrip_is_0_255_mono8():
    mask = np.random.default_rng(4).random((9, 11)) > 0.5
    msg = mask_to_image(mask)
    assert msg.encoding == "mono8" and set(np.unique(image_to_numpy(msg))) <= {0, 255}
    assert np.array_equal(image_to_mask(msg), mask)


def test_depth_in_metres_with_invalid_as_nan():
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    d = image_to_depth_m(numpy_to_image(mm, "16UC1"))
    assert np.isnan(d[0, 0]) and d[0, 1] == 1.0 and d[1, 0] == 2.5
    m = np.array([[np.nan, -1.0], [0.0, 1.25]], np.float32)
    d = image_to_depth_m(numpy_to_image(m, "32FC1"))
    assert np.isnan(d[:1]).all() and np.isnan(d[1, 0]) and d[1, 1] == 1.25


def test_header_is_copied():
    from std_msgs.msg import Header

    hdr = Header(frame_id="camera_optical")
    hdr.stamp.sec, hdr.stamp.nanosec = 12, 345
    msg = rgb_to_image(np.zeros((2, 3, 3), np.uint8), hdr)
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.nanosec == 345


def _msg(**kw):
    base = dict(height=4, width=4, encoding="rgb8", is_bigendian=0, step=12, data=bytes(48))
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("fields, words", [
    (dict(encoding="bayer_rggb8"), "not supported"),
    (dict(encoding=""), "not supported"),
    (dict(height=0, width=0, step=0, data=b""), "zero size"),
    (dict(step=11), "step is smaller"),
    (dict(data=bytes(47)), "data length"),
    (dict(data=bytes(49)), "data length"),
    (dict(data=b""), "data length"),
    (dict(encoding="yuv422", width=3, step=6, data=bytes(24)), "even width"),
])
def test_bad_messages_raise_the_specific_error(fields, words):
    with pytest.raises(ImageConversionError, match=words) as info:
        image_to_rgb(_msg(**fields))
    assert isinstance(info.value, BadImageError)  # the node maps it to STATUS_BAD_IMAGE


def test_depth_is_refused_as_camera_image_and_vice_versa():
    with pytest.raises(ImageConversionError, match="depth"):
        image_to_rgb(numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))
    with pytest.raises(ImageConversionError, match="depth must be"):
        image_to_depth_m(rgb_to_image(np.zeros((2, 2, 3), np.uint8)))


def test_array_that_does_not_fit_the_encoding_is_refused():
    with pytest.raises(ImageConversionError, match="does not fit"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="does not fit"):
        numpy_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")


def test_rosbags_message_types_roundtrip():
    from rosbags.typesys import Stores, get_typestore

    from lens_ros.conversions.image import rosbags_types

    types = rosbags_types(get_typestore(Stores.ROS2_JAZZY))
    rgb = _random("rgb8", 5, 7, np.random.default_rng(5))
    msg = rgb_to_image(rgb, types=types)
    assert type(msg).__name__ == "sensor_msgs__msg__Image" and isinstance(msg.data, np.ndarray)
    assert np.array_equal(image_to_rgb(msg), rgb)
    assert sys.byteorder == "little" or msg.is_bigendian == 1
