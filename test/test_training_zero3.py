"""ZeRO-3: the parameters LENS reads outside their module's forward stay usable.

ZeRO-3's gathering is reproduced here in one process: every parameter above the persistence
threshold is emptied and restored only while its owning module's forward runs (DeepSpeed's
pre/post-forward hooks). The mask pass the GRPO trainer runs for the mask reward then fails
with DeepSpeed's "auto" threshold and works, with identical masks, with the threshold set by
``lens_ros.training.zero3``. When DeepSpeed is importable, its config parser and a real ZeRO-3
engine (one CPU process) are checked too.
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


def test_the_trainer_hook_updates_both_deepspeed_config_dicts(tiny, monkeypatch):
    from types import SimpleNamespace

    registered = []  # registration itself needs DeepSpeed: the real-engine test covers it
    monkeypatch.setattr(zero3, "register_external_params", registered.append)

    ds = json.loads((CONFIG / "deepspeed_zero3.json").read_text())
    hf_copy = json.loads(json.dumps(ds))
    plugin = SimpleNamespace(deepspeed_config=ds, hf_ds_config=SimpleNamespace(config=hf_copy))
    trainer = SimpleNamespace(accelerator=SimpleNamespace(
        state=SimpleNamespace(deepspeed_plugin=plugin)))
    assert zero3.persist_out_of_forward_params(trainer, tiny) == 64 * 64
    for cfg in (ds, hf_copy):
        assert cfg["zero_optimization"][zero3.THRESHOLD_KEY] == 64 * 64
    assert registered == [tiny]
    no_ds = SimpleNamespace(accelerator=SimpleNamespace(state=SimpleNamespace()))
    assert zero3.persist_out_of_forward_params(no_ds, tiny) is None


def _run_script(mode: str, out: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(["bash", "scripts/gpu/zero3_grpo.sh", mode, "--steps", "2", "--out",
                           str(out)], cwd=CONFIG.parent, env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "zero3_grpo: PASS"
    assert (out / "tiny" / "final" / "config.json").is_file()
    return proc.stdout


@pytest.mark.slow
def test_the_gpu_script_dry_run_passes(tmp_path):
    assert "tiny (cpu dry run): PASS" in _run_script("--dry-run", tmp_path)


@pytest.mark.slow
def test_the_gpu_script_runs_grpo_under_a_real_zero3_engine_on_cpu(tmp_path):
    """The GPU script's own command (accelerate launch + DeepSpeed ZeRO-3 + lens-train grpo) on
    CPU: reaches its steps, sets the persistence threshold, writes a loadable checkpoint."""
    pytest.importorskip("deepspeed")
    assert "tiny (ZeRO-3 CPU): PASS" in _run_script("--cpu", tmp_path)


ENGINE_SCRIPT = """import os, sys, importlib.util
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
import torch, deepspeed
from lens_ros.model.presets import build_lens
from lens_ros.training import zero3
from lens_ros.training.lens_pass import LensPassRequest, install_lens_forward
from lens_ros.training.common import configure_trainable
m = build_lens("tiny", seed=0)
configure_trainable(m, train_llm=True, train_vision=True, train_sam_decoder=True)
install_lens_forward(m)
torch.manual_seed(0)
ids = torch.randint(20, 200, (2, 9)); attn = torch.ones_like(ids)
pix = torch.randn(2, 3, 256, 256)
with torch.no_grad():
    m.eval(); want = m.decode_masks(m.sam_prompt(m.query_hidden_states(ids, attn)), m.encode_sam_image(pix), multimask_fallback=False).low_res_logits
q0 = m.learnable_query.detach().clone()
cfg = {"train_batch_size": 1, "train_micro_batch_size_per_gpu": 1,
       "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": zero3.required_threshold(m, 64)},
       "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}}}
print("external:", len(zero3.register_external_params(m)))
engine, *_ = deepspeed.initialize(model=m, model_parameters=[p for p in m.parameters() if p.requires_grad], config=cfg)
print("after init: learnable_query", tuple(m.learnable_query.shape), flush=True)
for step in range(2):
    m.eval()
    with torch.no_grad(), zero3.gathered(m):  # the mask-reward pass, outside the engine forward
        feats = m.encode_sam_image(pix)
        got = m.decode_masks(m.sam_prompt(m.query_hidden_states(ids, attn)), feats, multimask_fallback=False).low_res_logits
    print(f"step {step}: out-of-forward mask pass OK, max |diff| vs unpartitioned {(got - want).abs().max().item():.2e}", flush=True)
    m.train()
    with zero3.gathered(m):
        feats = m.encode_sam_image(pix)
    req = LensPassRequest("1d", 1.0, feats)
    low = engine(input_ids=ids, attention_mask=attn, lens=req)  # policy pass through the engine
    loss = low.float().sigmoid().mean()
    engine.backward(loss); engine.step()
    print(f"step {step}: policy pass + backward + step OK, loss {loss.item():.4f}", flush=True)
with deepspeed.zero.GatheredParameters([m.learnable_query]):
    moved = not torch.equal(m.learnable_query.detach(), q0)
print("learnable_query trained:", moved)
"""


def test_a_real_zero3_engine_runs_the_lens_passes(tmp_path):
    """DeepSpeed's own ZeRO-3 engine (one CPU process, gloo): the mask pass outside the engine's
    forward (under ``zero3.gathered``) matches the unpartitioned model, and two policy passes
    through the engine train ``learnable_query`` with the SAM embeddings registered as external
    parameters. Skipped where DeepSpeed is not installed (requirements/gpu.txt)."""
    import os
    import socket
    import subprocess
    import sys

    pytest.importorskip("deepspeed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "engine.py").write_text(ENGINE_SCRIPT)
    path = os.pathsep.join([str(CONFIG.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, str(tmp_path / "engine.py"), str(port)],
                          cwd=CONFIG.parent, env=env, capture_output=True, text=True, timeout=400)
    out = proc.stdout
    assert proc.returncode == 0, (out + proc.stderr)[-4000:]
    assert "after init: learnable_query (0,)" in out  # really partitioned
    first = next(line for line in out.splitlines() if line.startswith("step 0: out-of-forward"))
    assert float(first.rsplit(" ", 1)[1]) < 1e-5
    assert "step 1: policy pass + backward + step OK" in out
    assert "learnable_query trained: True" in out
