"""Two-process DDP (gloo, CPU) GRPO through ``accelerate launch`` with the mask-loss gate on:
both ranks end identical, also over steps where no rollout passes the gate."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from safetensors.torch import save_file
from lens_ros.training.cli import parse_stage_args
from lens_ros.training.runner import run

out, config = sys.argv[1], sys.argv[2]
model_args, data, args = parse_stage_args(
    "grpo", [config + "/train_grpo.yaml", config + "/train_grpo_cpu_tiny.yaml"],
    # 2 ranks x 2 rollouts = one group of G=4 per step, split across the ranks
    ["--output_dir", out, "--per_device_train_batch_size", "2", "--max_steps", "3",
     "--save_strategy", "no", "--toy_images", "2",
     # the mask-loss gate: steps where no rollout's box passes must keep DDP's graph whole
     "--mask_loss_min_box_iou", "0.5"])
trainer = run("grpo", model_args, data, args)
acc = trainer.accelerator
model = acc.unwrap_model(trainer.model)
save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"},
          f"{out}/rank{acc.process_index}.safetensors")
import json  # a file per rank: stdout lines of two ranks can interleave in one pipe
with open(f"{out}/rank{acc.process_index}.json", "w") as fh:
    json.dump({"rank": acc.process_index, "world": acc.num_processes,
               "type": str(acc.distributed_type), "steps": trainer.state.global_step}, fh)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_grpo_keeps_ranks_identical(tmp_path):
    script = tmp_path / "ddp_grpo.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "config" / "accelerate_2proc_cpu.yaml"), "--main_process_port",
           str(free_port()), str(script), str(out), str(REPO / "config")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=400)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for rank in (0, 1):
        info = json.loads((out / f"rank{rank}.json").read_text())
        assert info == {"rank": rank, "world": 2, "type": "DistributedType.MULTI_CPU", "steps": 3}
    a = load_file(str(out / "rank0.safetensors"))
    b = load_file(str(out / "rank1.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    shares = [r["mask_loss_share"] for r in map(json.loads, (out / "metrics.jsonl").read_text()
                                                .splitlines()) if "mask_loss_share" in r]
    assert len(shares) == 3 and min(shares) < 1.0  # the gate dropped rollouts
    init = load_file(str(out / "init" / "model.safetensors"))
    # training happened (the gate kept the mask loss off, so the LLM moved through GRPO)
    key = "model.language_model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(init[key.replace("language_model.", "")], a[key])
