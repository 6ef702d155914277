"""Training curves from a run's ``metrics.jsonl``: one PNG per metric plus an overview grid."""
from __future__ import annotations

import math
import re
from pathlib import Path

from lens_ros.training.common import read_metrics

#: Metrics plotted when present, in this order (every ``rewards/*/mean`` is added after them).
CURVES = ("loss", "mask_loss", "mask_bce", "mask_dice", "reward", "reward_std", "kl", "entropy",
          "grad_norm", "learning_rate", "completions/mean_length")


def plottable_metrics(records: list[dict]) -> list[str]:
    """The metric names to plot: :data:`CURVES` first, then each reward function's mean."""
    present = {k for r in records for k in r}
    rewards = sorted(k for k in present if re.fullmatch(r"rewards/.+/mean", k))
    return [k for k in CURVES if k in present] + rewards


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``<metric>.png`` for each plottable metric and ``overview.png``; returns the paths.

    Raises FileNotFoundError when ``run_dir/metrics.jsonl`` is missing and ValueError when it
    holds no step with a plottable metric.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {run_dir} a lens-train output_dir?")
    records = [r for r in read_metrics(path) if "step" in r]
    names = plottable_metrics(records)
    if not names:
        raise ValueError(f"{path} has no plottable metric (looked for {list(CURVES)} and "
                         "rewards/*/mean)")
    out = Path(out_dir) if out_dir else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    grid, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    for i, name in enumerate(names):
        pts = [(r["step"], r[name]) for r in records if isinstance(r.get(name), (int, float))]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for target in (ax, axes[i // cols][i % cols]):
            target.plot(xs, ys, marker="." if len(xs) < 50 else None)
            target.set_title(name)
            target.set_xlabel("step")
            target.grid(alpha=0.3)
        fig.tight_layout()
        file = out / (name.replace("/", "_") + ".png")
        fig.savefig(file, dpi=100)
        plt.close(fig)
        written.append(file)
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].axis("off")
    grid.tight_layout()
    grid.savefig(out / "overview.png", dpi=90)
    plt.close(grid)
    written.append(out / "overview.png")
    return written
