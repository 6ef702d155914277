"""ZeRO-3: the parameters LENS reads outside their module's forward are made persistent.

ZeRO-3's gathering is reproduced here in one process: every parameter above the persistence
threshold is emptied and restored only while its owning module's forward runs (DeepSpeed's
pre/post-forward hooks). The mask pass the GRPO trainer runs for the mask reward then fails
with DeepSpeed's "auto" threshold and works, with identical masks, with the threshold set by
``lens_ros.training.zero3``. When DeepSpeed is importable, its own config parser is checked too.
"""
import json
from pathlib import Path

import pytest
import torch

from lens_ros.model.presets import build_lens
from lens_ros.training import zero3

CONFIG = Path(__file__).resolve().parents[1] / "config"


class Zero3Emulation:
    """Partition ``model`` like ZeRO-3 with ``threshold``; ``close()`` restores it."""

    def __init__(self, model: torch.nn.Module, threshold: int):
        self.full, self.handles = {}, []
        for module in model.modules():
            own = [p for p in module.parameters(recurse=False) if p.numel() > threshold]
            if not own:
                continue
            for p in own:
                if id(p) not in self.full:
                    self.full[id(p)] = (p, p.data)
                    p.data = torch.empty(0, dtype=p.dtype)
            self.handles.append(module.register_forward_pre_hook(self._gather(own)))
            self.handles.append(module.register_forward_hook(self._release(own)))

    def _gather(self, own):
        def hook(module, args):
            for p in own:
                p.data = self.full[id(p)][1]
        return hook

    @staticmethod
    def _release(own):
        def hook(module, args, output):
            for p in own:
                p.data = torch.empty(0, dtype=p.dtype)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()
        for p, data in self.full.values():
            p.data = data


def mask_pass(model):
    """What ``LensGRPOTrainer._predict_masks`` runs, outside any root forward."""
    torch.manual_seed(0)
    ids = torch.randint(20, 200, (2, 9))
    attn = torch.ones_like(ids)
    pixels = torch.randn(2, 3, model.lens_config.sam.image_size, model.lens_config.sam.image_size)
    with torch.no_grad():
        q = model.query_hidden_states(ids, attn)
        feats = model.encode_sam_image(pixels)
        return model.decode_masks(model.sam_prompt(q), feats, multimask_fallback=False)


@pytest.fixture(scope="module")
def tiny():
    return build_lens("tiny", seed=0).eval()


def test_out_of_forward_parameters_are_the_query_and_sam_direct_reads(tiny):
    names = zero3.out_of_forward_params(tiny)
    assert names["learnable_query"] == 64 * 64
    assert "sam.no_mem_embed" in names and "sam.sam_mask_decoder.mask_tokens.weight" in names
    assert not any(n.startswith(("model.", "connector.", "sam.image_encoder.")) for n in names)
    lens3b = build_lens("lens-3b", device="meta")
    big = zero3.out_of_forward_params(lens3b)
    assert big["learnable_query"] == 131072  # above transformers' "auto" 10 x 2048
    assert zero3.required_threshold(lens3b, 2048) == 131072
    assert zero3.required_threshold(lens3b, 2048, current=200000) == 200000


def test_the_mask_pass_needs_the_raised_threshold_under_zero3_partitioning(tiny):
    want = mask_pass(tiny).low_res_logits
    auto = Zero3Emulation(tiny, 10 * tiny.lens_config.hidden_size)
    try:
        with pytest.raises(RuntimeError):
            mask_pass(tiny)  # learnable_query is partitioned outside the root forward
    finally:
        auto.close()
    fixed = Zero3Emulation(tiny, zero3.required_threshold(tiny, tiny.lens_config.hidden_size))
    try:
        assert len(fixed.full) > 0  # the LLM, connector and SAM encoder weights stay partitioned
        got = mask_pass(tiny).low_res_logits
    finally:
        fixed.close()
    assert torch.equal(got, want)


def test_the_zero3_file_gets_the_threshold_and_deepspeed_accepts_it(tiny):
    ds = json.loads((CONFIG / "deepspeed_zero3.json").read_text())
    value = zero3.apply_to_config(ds, tiny, tiny.lens_config.hidden_size)
    assert value == ds["zero_optimization"][zero3.THRESHOLD_KEY] == 64 * 64
    zero2 = json.loads((CONFIG / "deepspeed_zero2.json").read_text())
    assert zero3.apply_to_config(zero2, tiny, 64) is None
    assert zero3.THRESHOLD_KEY not in zero2["zero_optimization"]
    deepspeed = pytest.importorskip("deepspeed")  # optional: requirements/gpu.txt
    from deepspeed.runtime.config import DeepSpeedConfig

    concrete = {**ds, "train_batch_size": 8, "train_micro_batch_size_per_gpu": 8,
                "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
                "bf16": {"enabled": True}, "fp16": {"enabled": False},
                "zero_optimization": {k: (v if v != "auto" else 1000)
                                      for k, v in ds["zero_optimization"].items()}}
    parsed = DeepSpeedConfig(concrete)
    assert parsed.zero_optimization_stage == 3
    assert parsed.zero_config.param_persistence_threshold == 64 * 64
    assert deepspeed.__version__


def test_the_trainer_hook_updates_both_deepspeed_config_dicts(tiny):
    from types import SimpleNamespace

    ds = json.loads((CONFIG / "deepspeed_zero3.json").read_text())
    hf_copy = json.loads(json.dumps(ds))
    plugin = SimpleNamespace(deepspeed_config=ds, hf_ds_config=SimpleNamespace(config=hf_copy))
    trainer = SimpleNamespace(accelerator=SimpleNamespace(
        state=SimpleNamespace(deepspeed_plugin=plugin)))
    assert zero3.persist_out_of_forward_params(trainer, tiny) == 64 * 64
    for cfg in (ds, hf_copy):
        assert cfg["zero_optimization"][zero3.THRESHOLD_KEY] == 64 * 64
    no_ds = SimpleNamespace(accelerator=SimpleNamespace(state=SimpleNamespace()))
    assert zero3.persist_out_of_forward_params(no_ds, tiny) is None


@pytest.mark.slow
def test_the_gpu_script_dry_run_passes(tmp_path):
    import os
    import subprocess
    import sys

    repo = CONFIG.parent
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(["bash", "scripts/gpu/zero3_grpo.sh", "--dry-run", "--steps", "2",
                           "--out", str(tmp_path)], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "zero3_grpo: PASS"
    assert (tmp_path / "tiny" / "final" / "config.json").is_file()
