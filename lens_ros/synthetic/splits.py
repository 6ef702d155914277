"""Train/val/test splits of the synthetic scenes as disjoint seed ranges.

Scene ``index`` of a split is ``make_scene(np.random.default_rng(scene_seed(split, index)),
split_level(index), config)``; levels cycle through ``LEVELS`` so every split is balanced.
The test range holds a few hundred scenes that no training run ever draws.
"""
from __future__ import annotations

import numpy as np

from lens_ros.synthetic.expressions import LEVELS
from lens_ros.synthetic.scene import Scene, SceneConfig, make_scene

#: split -> the seeds it owns (disjoint); test and val are small held-out sets
SPLITS: dict[str, range] = {
    "train": range(0, 10_000_000),
    "val": range(10_000_000, 10_000_400),
    "test": range(20_000_000, 20_000_400),
}


def scene_seed(split: str, index: int) -> int:
    """Seed of scene ``index`` of ``split``.

    Raises:
      ValueError: unknown split, or ``index`` outside the split's size.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
    seeds = SPLITS[split]
    if not 0 <= index < len(seeds):
        raise ValueError(f"index {index} is outside split {split!r} (0..{len(seeds) - 1})")
    return seeds[index]


def split_level(index: int, levels: tuple[str, ...] = LEVELS) -> str:
    """The level of scene ``index``: levels cycle so that any 4 consecutive scenes are balanced."""
    return levels[index % len(levels)]


def make_split_scene(split: str, index: int, config: SceneConfig | None = None,
                     levels: tuple[str, ...] = LEVELS, n_expressions: int = 1) -> Scene:
    """Scene ``index`` of ``split`` with ``n_expressions`` commands of its level."""
    rng = np.random.default_rng(scene_seed(split, index))
    return make_scene(rng, split_level(index, levels), config, n_expressions)
