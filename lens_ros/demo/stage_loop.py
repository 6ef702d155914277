"""What the demo recipe's own training stages share (supervised warm-up and mask stage): the
step/minute schedule, optimizer step, periodic held-out evaluation with ``last/`` and ``best/``
checkpoints, metrics lines and curves.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from lens_ros.demo.evaluate import evaluate

log = logging.getLogger(__name__)


def progress(step: int, minutes: float, cfg) -> float:
    """Share of the run done: the larger of the step and the time fractions (so the schedule
    ends on time whichever budget binds first)."""
    return min(1.0, max(step / max(1, cfg.steps), minutes / max(1e-9, cfg.max_minutes)))


def eval_due(step: int, minutes: float, next_eval: float, cfg) -> bool:
    """Whether the periodic held-out evaluation runs after ``step``: every ``eval_every_steps``
    steps when that is set (reproducible), else once ``minutes`` passes ``next_eval``."""
    if cfg.eval_every_steps > 0:
        return (step + 1) % cfg.eval_every_steps == 0
    return minutes >= next_eval


def lr_at(step: int, minutes: float, cfg) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``lr * min_lr_ratio`` by :func:`progress`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = progress(step, minutes, cfg)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def load_start(cfg_init: str, preset: str):
    """(model fp32 train mode, processor, InferenceConfig) from a checkpoint or a preset."""
    from lens_ros.model.build import load_checkpoint
    from lens_ros.model.config import InferenceConfig
    from lens_ros.model.presets import build_lens, get_preset
    from lens_ros.model.processing import build_processor

    if cfg_init:
        ck = load_checkpoint(cfg_init, torch.device("cpu"), torch.float32)
        return ck.model.train(), ck.processor, ck.inference
    p = get_preset(preset)
    cfg = p.config()
    tok = p.make_tokenizer()
    model = build_lens(cfg)
    gen = model.generation_config
    gen.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    gen.pad_token_id = gen.bos_token_id = tok.pad_token_id
    proc = build_processor(tok, cfg.processing.min_pixels, cfg.processing.max_pixels,
                           cfg.vision_config["patch_size"],
                           cfg.vision_config["spatial_merge_size"])
    return model.train(), proc, InferenceConfig().replace(**p.inference)


def save(model, processor, inference, directory: Path, fp16: bool = False) -> None:
    """A loadable checkpoint (fp16 weights when ``fp16``; the training model is not changed)."""
    from lens_ros.model.checkpoints import save_checkpoint

    sd = {k: (v.half() if fp16 and v.is_floating_point() else v)
          for k, v in model.state_dict().items()} if fp16 else None
    save_checkpoint(model, directory, processor=processor, inference=inference, state_dict=sd)


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def optimizer_step(opt, params, step: int, minutes: float, cfg) -> tuple[float, float]:
    """Set the scheduled lr, clip gradients, step; returns (lr, gradient norm before clipping)."""
    lr = lr_at(step, minutes, cfg)
    for g in opt.param_groups:
        g["lr"] = lr
    gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
    opt.step()
    return lr, gn


def start_run(cfg, name: str):
    """Threads, seeds, run folder with ``<name>_config.json``, starting model.

    Returns (numpy Generator, output Path, model, processor, InferenceConfig)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model, processor, inference = load_start(cfg.init, cfg.preset)
    return np.random.default_rng(cfg.seed), out, model, processor, inference


def eval_and_save(model, processor, inference, cfg, out: Path, step: int, minutes: float,
                   best: float, key: str = "eval/acc") -> float:
    """Held-out evaluation; saves ``last/`` and, when ``key`` improved, ``best/``."""
    ev = evaluate(model, processor, cfg.eval_scenes, listing=cfg.listing,
                  inference=inference)
    ev.update({"step": step, "minutes": minutes})
    append_jsonl(out / "metrics.jsonl", ev)
    log.info("eval at step %d (%.1f min): %s", step, minutes,
             {k: round(v, 3) for k, v in ev.items() if k.startswith("eval/")})
    save(model, processor, inference, out / "last")
    score = ev[key] + 0.01 * ev["eval/think"]
    if score > best:
        save(model, processor, inference, out / "best")
        (out / "best" / "eval.json").write_text(json.dumps(ev, indent=2))
        best = score
    return best


def plot_curves(out: Path) -> None:
    """Loss curves (lens-train plot) plus the held-out curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lens_ros.training.common import read_metrics
    from lens_ros.training.plot import plot_run

    try:
        plot_run(out)
    except ValueError:
        pass
    recs = [r for r in read_metrics(out / "metrics.jsonl") if "eval/acc" in r]
    if not recs:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("eval/acc", "eval/think", "eval/valid", "eval/ciou"):
        ax.plot([r["minutes"] for r in recs], [r.get(key, 0.0) for r in recs], marker=".",
                label=key[5:])
    ax.set_xlabel("minutes")
    ax.set_title("held-out (val) during " + out.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    (out / "plots").mkdir(exist_ok=True)
    fig.savefig(out / "plots" / "heldout.png", dpi=100)
    plt.close(fig)
