"""Training/evaluation items from synthetic scenes, as the training loader's ``TrainItem``.

``SyntheticReferDataset[i]`` is a :class:`lens_ros.data.items.TrainItem` (image HxWx3 uint8
RGB, question, gt_mask HxW bool, gt_box XYXY float pixels with exclusive x2/y2, reasoning,
source ``"synthetic/<level>"``, id), so it plugs into ``ItemDataset`` beside RefCOCO.
:meth:`SyntheticReferDataset.record` gives the same item as a dict with the extras the demo
recipe needs: ``level``, ``kind``, ``target`` (the canonical "size colour shape") and
``objects`` (every object's {"name", "box"}, left to right: the answer of the dense
"list the objects" samples). Dense items (``dense_fraction``) have level ``"dense"``, question
``LIST_COMMAND``, the union of all masks as ``gt_mask`` and its box as ``gt_box``.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from lens_ros.geometry import mask_to_box
from lens_ros.synthetic.expressions import LEVELS, list_objects
from lens_ros.synthetic.scene import SceneConfig
from lens_ros.synthetic.splits import SPLITS, make_split_scene, scene_seed
from lens_ros.synthetic.vocabulary import LIST_COMMAND
from lens_ros.data.items import TrainItem


class SyntheticReferDataset:
    """Deterministic map-style dataset: item ``i`` comes from scene ``i`` of ``split``.

    Arguments:
      split (str): "train", "val" or "test" (disjoint seed ranges, see ``splits.py``).
      size (int | None): number of items (default: the whole split; train is 10 M).
      config (SceneConfig | None): scene drawing options (e.g. an easy 1-3 object pool).
      levels (tuple[str, ...]): the levels to cycle through (balanced).
      dense_fraction (float): share of items that are "list the objects" samples.
    """

    def __init__(self, split: str = "train", size: int | None = None,
                 config: SceneConfig | None = None, levels: tuple[str, ...] = LEVELS,
                 dense_fraction: float = 0.0):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
        n = len(SPLITS[split])
        if size is not None and not 0 <= size <= n:
            raise ValueError(f"size {size} is outside 0..{n} for split {split!r}")
        bad = [lv for lv in levels if lv not in LEVELS]
        if bad or not levels:
            raise ValueError(f"levels {bad or '(empty)'} not allowed; choose from {LEVELS}")
        if not 0.0 <= dense_fraction <= 1.0:
            raise ValueError(f"dense_fraction {dense_fraction} is not in [0, 1]")
        self.split, self.size = split, n if size is None else size
        self.config = config or SceneConfig()
        self.levels, self.dense_fraction = tuple(levels), dense_fraction

    def __len__(self) -> int:
        return self.size

    def is_dense(self, index: int) -> bool:
        """Whether item ``index`` is a "list the objects" sample (fixed by its seed)."""
        seed = scene_seed(self.split, index)
        return bool(np.random.default_rng([seed, 1]).random() < self.dense_fraction)

    def record(self, index: int) -> dict:
        """Item ``index`` as a dict: the TrainItem fields plus level, kind, target, objects."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} items")
        scene = make_split_scene(self.split, index, self.config, self.levels)
        objects = [{"name": name, "box": list(box)} for name, box in list_objects(scene.objects)]
        base = {"image": scene.rgb, "objects": objects}
        if self.is_dense(index):
            union = scene.labels >= 0
            return {**base, "id": f"synthetic-{self.split}-{index}-dense",
                    "question": LIST_COMMAND, "gt_mask": union, "gt_box": list(mask_to_box(union)),
                    "reasoning": "", "level": "dense", "target": "", "kind": "dense"}
        e = scene.expressions[0]
        return {**base, "id": f"synthetic-{self.split}-{index}", "question": e.text,
                "gt_mask": e.mask, "gt_box": list(e.box), "reasoning": e.reasoning,
                "level": e.level, "target": e.target_name, "kind": e.kind}

    def __getitem__(self, index: int) -> TrainItem:
        r = self.record(index)
        return TrainItem(image=r["image"], question=r["question"], gt_mask=r["gt_mask"],
                         gt_box=tuple(float(v) for v in r["gt_box"]), reasoning=r["reasoning"],
                         source=f"synthetic/{r['level']}", id=r["id"]).validate()

    def __iter__(self) -> Iterator[TrainItem]:
        for i in range(self.size):
            yield self[i]
