"""CUDA smoke test: runs only when a GPU is present (skipped on CPU-only machines such as CI).

On a GPU: the tiny checkpoint loads on ``cuda`` in bf16 by default (fp16 on request) with
PyTorch SDPA attention, segments, tracks (the tracking head runs in fp32 beside the bf16 model)
and runs the fast mask pass; ``release()`` gives the GPU memory back. What these dtypes mean for
the released LENS-3B is in docs/track3d.md ("Running the released LENS-3B on a GPU robot").
"""
import numpy as np
import pytest
import torch

from lens_ros.core import Status
from lens_ros.model import LensSegmenter
from lens_ros.model.tracking.memory import Tracker

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: the GPU smoke test needs one")


@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_segment_track_and_release_on_cuda(tiny_model_dir, bundled_image, dtype):
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    seg = LensSegmenter.from_pretrained(tiny_model_dir, dtype=dtype)
    assert seg.device.type == "cuda"
    assert seg.model.dtype == (dtype or torch.bfloat16)  # bf16 is the CUDA default
    assert seg.model.config._attn_implementation == "sdpa"
    assert torch.cuda.memory_allocated() > before  # what the node reports after load
    seg.set_image(bundled_image)
    r = seg.segment("the red mug")
    assert r.status == Status.OK and r.mask.shape == bundled_image.shape[:2]
    seg.configure(fast_mask_pass=True)
    fast = seg.segment("the red mug")
    assert fast.answer == r.answer and fast.mask.shape == r.mask.shape
    tracker = Tracker.untrained(seg)
    assert next(tracker.head.parameters()).dtype == torch.float32
    mask = np.zeros(bundled_image.shape[:2], bool)
    mask[60:120, 80:160] = True
    tracker.start(bundled_image, mask)
    t = tracker.track(bundled_image)
    assert t.mask.shape == mask.shape and np.isfinite(t.object_score)
    del tracker
    seg.release()
    torch.cuda.empty_cache()
    assert torch.cuda.memory_allocated() <= before + 1024 ** 2
