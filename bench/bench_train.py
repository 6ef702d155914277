"""Seconds per GRPO step of the ``tiny`` LENS model at G=4 and G=8, and where the time goes.

One prompt per step (per-device batch = G), a generated shapes dataset, CPU fp32. Phases:
generation (HF ``generate`` of the G rollouts), scoring (reference log-probs, SAM image
features, the no-gradient mask pass for the mask reward, rewards), forward+backward (the
policy's log-prob and mask pass, the loss, backward), other (optimizer, logging, data).

    OMP_NUM_THREADS=1 python bench/bench_train.py [--steps 3] [--completion 16]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import torch


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per setting")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--completion", type=int, default=16,
                   help="max_completion_length (a random tiny policy always uses all of it)")
    p.add_argument("--groups", type=int, nargs="+", default=[4, 8], help="G values to time")
    p.add_argument("--seed", type=int, default=0, help="torch / trainer seed")
    return p


class PhaseTimer:
    """Accumulates wall time of wrapped trainer methods per phase."""

    def __init__(self):
        self.total = defaultdict(float)

    @contextmanager
    def phase(self, name):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.total[name] += time.perf_counter() - t

    def wrap(self, obj, method: str, name: str):
        inner = getattr(obj, method)

        def wrapped(*a, **kw):
            with self.phase(name):
                return inner(*a, **kw)

        setattr(obj, method, wrapped)


def run_setting(model_dir, data_root, g: int, steps: int, warmup: int, completion: int,
                seed: int) -> dict:
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from lens_ros.model.build import load_checkpoint
    from lens_ros.training.batching import GrpoRows
    from lens_ros.data.sources import ItemDataset, ReferSegSource
    from lens_ros.training.grpo import LensGRPOTrainer
    from lens_ros.training.grpo_config import LensGRPOConfig

    loaded = load_checkpoint(model_dir)
    rows = GrpoRows(ItemDataset([ReferSegSource(data_root, "refcoco")]), loaded.processor)
    timer = PhaseTimer()
    marks = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), dict(timer.total)))

    out = tempfile.mkdtemp(prefix=f"bench_grpo_g{g}_")
    args = LensGRPOConfig(output_dir=out, use_cpu=True, bf16=False, report_to="none",
                          per_device_train_batch_size=g, num_generations=g,
                          max_completion_length=completion, max_steps=warmup + steps,
                          save_strategy="no", activation_checkpointing=False, seed=seed,
                          logging_strategy="no", dataloader_num_workers=0, disable_tqdm=True)
    trainer = LensGRPOTrainer(loaded.model.train(), args, rows.as_hf_dataset(),
                              loaded.processor, row_source=rows, callbacks=[StepClock()])
    trainer.remove_callback(PrinterCallback)  # keep the output to the figures
    timer.wrap(trainer, "_generate_single_turn", "generation")
    timer.wrap(trainer, "_generate_and_score_completions", "rollout")
    timer.wrap(trainer, "compute_loss", "forward")
    backward = trainer.accelerator.backward

    def timed_backward(loss, **kw):
        with timer.phase("backward"):
            return backward(loss, **kw)

    trainer.accelerator.backward = timed_backward
    trainer.train()
    (t0, p0), (t1, p1) = marks[warmup - 1], marks[-1]
    wall = t1 - t0
    d = {k: p1.get(k, 0.0) - p0.get(k, 0.0) for k in p1}
    gen = d.get("generation", 0.0)
    phases = {"generation": gen, "scoring": d.get("rollout", 0.0) - gen,
              "forward+backward": d.get("forward", 0.0) + d.get("backward", 0.0)}
    phases["other"] = wall - sum(phases.values())
    return {"sec_per_step": wall / steps, "phases": {k: v / wall for k, v in phases.items()}}


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.manual_seed(args.seed)
    from lens_ros.model.presets import save_preset_checkpoint
    from lens_ros.data.toydata import write_toy_refer_seg

    tmp = tempfile.mkdtemp(prefix="bench_train_")
    model_dir = save_preset_checkpoint("tiny", os.path.join(tmp, "tiny"), seed=args.seed)
    data_root = write_toy_refer_seg(os.path.join(tmp, "data"), n_images=8, seed=args.seed)
    print(f"tiny LENS GRPO on CPU, torch threads {torch.get_num_threads()}, 1 process, "
          f"1 prompt/step, {args.completion} new tokens, {args.steps} timed steps after "
          f"{args.warmup} warm-up (seed {args.seed}; shared machine: timings are noisy)")
    base = None
    for g in args.groups:
        r = run_setting(model_dir, data_root, g, args.steps, args.warmup, args.completion,
                        args.seed)
        rel = "" if base is None else f"  ({r['sec_per_step'] / base:.2f}x G={args.groups[0]})"
        base = base or r["sec_per_step"]
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["phases"].items())
        print(f"G={g}: {r['sec_per_step']:.2f} s/step{rel}; {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
