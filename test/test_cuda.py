"""CUDA smoke test: runs only when a GPU is present (skipped on CPU machines such as CI).

On a GPU: the tiny checkpoint loads on ``cuda`` in bf16 by default (fp16 on request) with
PyTorch SDPA attention, segments, tracks (the tracking head runs in fp32 beside the bf16 model)
and runs the fast mask pass; ``release()`` gives the GPU memory back (what these dtypes mean for
the released LENS-3B: docs/track3d.md). A demo-recipe stage trains on ``device: cuda`` and
resumes there. scripts/gpu_run.sh runs this file on the GPU machine.
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


def test_demo_recipe_stage_trains_on_cuda(tmp_path):
    """The GPU recipe's device field: two supervised steps on CUDA, then a resumed third."""
    from lens_ros.demo.pool import generate_pool, save_pool
    from lens_ros.demo.train import main as train
    from lens_ros.synthetic.scene import SceneConfig

    save_pool(generate_pool(8, SceneConfig(), progress=False), tmp_path, "normal")
    save_pool(generate_pool(8, SceneConfig(min_objects=1, max_objects=3), 100, False), tmp_path,
              "easy")
    args = ["sft", "--pool_dir", str(tmp_path), "--output_dir", str(tmp_path / "sft"),
            "--device", "cuda", "--steps", "3", "--warmup_steps", "1", "--batch_size", "4",
            "--eval_scenes", "1", "--eval_every_steps", "3"]
    assert train(args + ["--stop_after_steps", "2"]) == 0
    assert train(args) == 0
    assert (tmp_path / "sft" / "last" / "model.safetensors").is_file()
