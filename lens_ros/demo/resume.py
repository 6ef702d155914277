"""Resumable state of a demo-recipe stage (supervised warm-up, mask stage): everything the step
loop needs to continue bit-identically after an interruption.

``<output_dir>/resume.pt`` holds the trained modules' state dicts (model and, for the warm-up,
the auxiliary head), the optimizer state, torch's CPU and CUDA RNG states, the numpy Generator
state, the next step, the best held-out score, the next time-based evaluation, the last
evaluated step and the training minutes spent. It is written with ``torch.save`` and read with
``torch.load(weights_only=True)`` (tensors and plain Python values only; no code is unpickled),
through a temporary file and a rename, so an interruption while saving leaves the previous
state intact.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "resume.pt"
#: config fields that may change between an interrupted run and its continuation
RUN_CONTROL_FIELDS = ("resume", "stop_after_steps", "state_every_steps", "max_minutes")


@dataclass
class LoopState:
    """Position of the step loop (all that is not a tensor)."""

    step: int = 0  #: next optimizer step to run
    best: float = -1.0  #: best held-out score so far (``best/`` holds that model)
    next_eval: float = 0.0  #: minutes at which the next time-based evaluation is due
    evaluated: int = -1  #: last step evaluated (-1 = none)
    minutes: float = 0.0  #: training minutes spent before this invocation
    finished: bool = False  #: the stage ran to its end (a rerun does nothing)


def state_path(out: Path) -> Path:
    return Path(out) / STATE_FILE


def save_state(out: Path, modules: dict, opt: torch.optim.Optimizer,
               rng: np.random.Generator, loop: LoopState) -> Path:
    """Write ``resume.pt`` in ``out`` (atomically); returns its path."""
    payload = {
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "loop": asdict(loop),
    }
    path = state_path(out)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_state(out: Path, modules: dict, opt: torch.optim.Optimizer,
               rng: np.random.Generator) -> LoopState | None:
    """Restore ``resume.pt`` of ``out`` into ``modules``, ``opt`` and the RNGs (torch, CUDA,
    ``rng``); returns the loop position, or None when ``out`` holds no state."""
    path = state_path(out)
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for key, module in modules.items():
        module.load_state_dict(payload["modules"][key])
    opt.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    rng.bit_generator.state = json.loads(payload["numpy_rng"])
    return LoopState(**payload["loop"])


def check_same_run(out: Path, name: str, config: dict) -> None:
    """Raise ValueError when ``out`` holds a state written under another ``<name>_config.json``
    (fields other than :data:`RUN_CONTROL_FIELDS`): the continuation would not be the same run."""
    saved = Path(out) / f"{name}_config.json"
    if not state_path(out).is_file() or not saved.is_file():
        return
    old = json.loads(saved.read_text())
    changed = sorted(k for k in set(old) | set(config) if k not in RUN_CONTROL_FIELDS
                     and old.get(k) != config.get(k))
    if changed:
        raise ValueError(f"{out} holds a resumable state of a run with other settings "
                         f"({', '.join(changed)}); pass --resume false to start over, or choose "
                         "another --output_dir")


def trim_metrics(path: Path, next_step: int) -> None:
    """Drop the metric lines of steps >= ``next_step`` (written after the state was saved, by
    the interrupted invocation) so a continued run's ``metrics.jsonl`` has each step once."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", -1) < next_step]
    path.write_text("".join(line + "\n" for line in keep))
