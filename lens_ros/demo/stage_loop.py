"""What the demo recipe's own training stages share (supervised warm-up and mask stage): the
device, the step/minute schedule, the step loop (:func:`run_steps`: resumable at any step,
:mod:`lens_ros.demo.resume`), the optimizer step, periodic held-out evaluation with ``last/``
and ``best/`` checkpoints, metrics lines and curves.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lens_ros.demo.evaluate import evaluate
from lens_ros.demo.resume import (LoopState, check_same_run, load_state, save_state, state_path,
                                  trim_metrics)

log = logging.getLogger(__name__)


@dataclass
class StageRunConfig:
    """Run, schedule and checkpointing settings shared by the demo recipe's own stages
    (:class:`lens_ros.demo.sft.SFTConfig`, :class:`lens_ros.demo.mask_stage.MaskStageConfig`;
    YAML keys = field names). Each stage adds its own fields and defaults."""

    output_dir: str = "runs/demo/stage"  #: run folder (metrics, plots, checkpoints)
    init: str = ""  #: checkpoint to start from; "" = random weights of ``preset``
    preset: str = "demo"  #: model preset used when ``init`` is empty
    pool_dir: str = "data/demo_pool"  #: folder of the pools (``python -m lens_ros.demo.pool``)
    steps: int = 1000  #: optimizer steps (the cosine schedule spans them)
    max_minutes: float = 60.0  #: stop (and save) after this many minutes of training (a
    #: safety net: when it binds, the schedule follows time and the run is not reproducible)
    batch_size: int = 16  #: samples per step
    lr: float = 1e-3  #: peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  #: cosine ends at lr x this
    warmup_steps: int = 100  #: linear warm-up steps
    weight_decay: float = 0.01  #: AdamW weight decay
    max_grad_norm: float = 1.0  #: gradient clipping
    eval_every_minutes: float = 6.0  #: held-out evaluation (and ``last/`` save) period
    eval_every_steps: int = 0  #: if > 0, evaluate every this many steps instead (reproducible)
    eval_scenes: int = 100  #: val scenes per evaluation
    log_every: int = 20  #: steps between metric lines
    seed: int = 0  #: seeds torch and numpy
    threads: int = 1  #: torch CPU threads
    device: str = "cpu"  #: cpu, cuda or auto (CUDA when available); fp32 weights either way
    resume: bool = True  #: continue from ``output_dir/resume.pt`` when present (false: restart)
    state_every_steps: int = 500  #: write the resumable state every this many steps (0 = only
    #: at the end and when stopped)
    stop_after_steps: int = 0  #: stop (saving the state) after this many steps of this
    #: invocation; 0 = run to the end. The schedule still spans ``steps``


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


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (``cuda:N``) or ``auto`` (CUDA when available) as a torch.device;
    ValueError when CUDA is asked for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but torch sees no CUDA device; "
                         "use --device cpu (or auto)")
    return dev


def to_device(batch: dict, device: torch.device) -> dict:
    """``batch`` with every tensor (also one level down, e.g. ``aux``) moved to ``device``."""
    def move(v):
        if isinstance(v, torch.Tensor):
            return v.to(device)
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        return v

    return {k: move(v) for k, v in batch.items()}


def load_start(cfg_init: str, preset: str):
    """(model fp32 train mode on the CPU, processor, InferenceConfig) from a checkpoint or, when
    ``cfg_init`` is empty, from ``preset``'s random weights drawn from the current (seeded) RNG."""
    from lens_ros.model.build import load_checkpoint
    from lens_ros.model.presets import build_preset

    if cfg_init:
        ck = load_checkpoint(cfg_init, torch.device("cpu"), torch.float32)
        return ck.model.train(), ck.processor, ck.inference
    model, processor, inference = build_preset(preset, seed=None)
    return model.train(), processor, inference


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
    """Threads, seeds, run folder with ``<name>_config.json``, starting model on ``cfg.device``.

    A resumable state in the folder must come from the same settings (ValueError otherwise;
    :func:`~lens_ros.demo.resume.check_same_run`). Returns (numpy Generator, output Path,
    model, processor, InferenceConfig)."""
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.resume:
        check_same_run(out, name, asdict(cfg))
    (out / f"{name}_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model, processor, inference = load_start(cfg.init, cfg.preset)
    return np.random.default_rng(cfg.seed), out, model.to(device), processor, inference


def run_steps(cfg, out: Path, trained: dict, opt, rng: np.random.Generator, train_step,
              evaluator, key: str = "eval/acc") -> Path | None:
    """The step loop of a stage, resumable at any step.

    ``trained``: the modules whose weights the stage changes ({"model": ..., ...}; saved in the
    state); ``train_step(step, minutes) -> dict`` runs one optimizer step and returns the
    figures of its metrics line; ``evaluator = (model, processor, inference)`` for the periodic
    held-out evaluation (``key`` picks ``best/``). With ``cfg.resume`` a state in ``out``
    (:mod:`lens_ros.demo.resume`) is restored first; a state is written every
    ``cfg.state_every_steps`` steps, when ``cfg.stop_after_steps`` steps of this invocation are
    done (returns None then: rerun to continue), and at the end (a rerun then does nothing).
    Returns the ``best/`` checkpoint directory."""
    metrics = out / "metrics.jsonl"
    loop = LoopState(next_eval=cfg.eval_every_minutes)
    restored = load_state(out, trained, opt, rng) if cfg.resume else None
    if restored is not None:
        loop = restored
        trim_metrics(metrics, loop.step)
        log.info("resumed from %s at step %d", state_path(out), loop.step)
    elif state_path(out).is_file():
        state_path(out).unlink()  # --resume false: start over
    if loop.finished:
        log.info("%s already finished (%d steps); nothing to do", out, loop.step)
        return out / "best"
    t0 = time.perf_counter() - 60 * loop.minutes
    first, step = loop.step, loop.step - 1
    for step in range(first, cfg.steps):
        minutes = (time.perf_counter() - t0) / 60
        if minutes >= cfg.max_minutes:
            log.info("time budget of %.1f min reached at step %d", cfg.max_minutes, step)
            step -= 1
            break
        if cfg.stop_after_steps and step - first >= cfg.stop_after_steps:
            loop.step, loop.minutes = step, minutes
            save_state(out, trained, opt, rng, loop)
            log.info("stopped before step %d; rerun the same command to continue", step)
            return None
        rec = train_step(step, minutes)
        if step % cfg.log_every == 0:
            rec = {"step": step, **rec, "minutes": minutes}
            append_jsonl(metrics, rec)
            log.info("step %d  %s", step, "  ".join(
                f"{k} {v:.3g}" for k, v in rec.items() if k not in ("step", "minutes")))
        if eval_due(step, minutes, loop.next_eval, cfg):
            loop.next_eval += cfg.eval_every_minutes
            loop.best = eval_and_save(*evaluator, cfg, out, step, minutes, loop.best, key=key)
            loop.evaluated = step
        if cfg.state_every_steps > 0 and (step + 1) % cfg.state_every_steps == 0:
            loop.step, loop.minutes = step + 1, (time.perf_counter() - t0) / 60
            save_state(out, trained, opt, rng, loop)
    minutes = (time.perf_counter() - t0) / 60
    if loop.evaluated != step:  # the final model, unless the last periodic evaluation saw it
        loop.best = eval_and_save(*evaluator, cfg, out, step, minutes, loop.best, key=key)
        loop.evaluated = step
    loop.step, loop.minutes, loop.finished = step + 1, minutes, True
    save_state(out, trained, opt, rng, loop)
    plot_curves(out)
    return out / "best"


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
