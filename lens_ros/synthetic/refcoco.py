"""Export synthetic scenes in the RefCOCO (LISA) layout, read unchanged by ``lens-eval`` and the
training loader::

    ROOT/NAME/refs(unc).p       pickle (protocol 2) of plain dicts: ref_id, ann_id, image_id,
                                split, sentences[{sent, raw, tokens, sent_id}], sent_ids,
                                file_name, category_id, plus level, kind, reasoning, target
    ROOT/NAME/instances.json    COCO: images, annotations (every object: bbox [x, y, w, h],
                                area, compressed-RLE segmentation {"size", "counts": str}),
                                categories (the shapes), info (generator settings, vocabulary)
    ROOT/NAME/images/*.png      the RGB images (lossless)

``ROOT`` is the reference's ``refer_seg`` folder; ``split`` is "train", "val" or "test".
"""
from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import cv2

from lens_ros.data.masks import encode_rle
from lens_ros.synthetic.scene import Scene, SceneConfig
from lens_ros.synthetic.splits import SPLITS, make_split_scene
from lens_ros.synthetic.vocabulary import SHAPES, VOCABULARY

REFS_FILE = "refs(unc).p"


class RefcocoWriter:
    """Collects scenes, then writes the refs pickle and instances.json on :meth:`close`.

    Arguments:
      root: the ``refer_seg`` folder; the dataset goes to ``root/name``.
      name: dataset folder name (``lens-eval --split NAME/test``).
      info: extra JSON-able metadata stored in ``instances.json["info"]``.
    Raises:
      FileExistsError: ``root/name`` already holds a refs pickle (never overwritten).
    """

    def __init__(self, root: str | Path, name: str = "synthetic", info: dict | None = None):
        self.folder = Path(root) / name
        if (self.folder / REFS_FILE).exists():
            raise FileExistsError(f"{self.folder / REFS_FILE} exists; choose another --name or "
                                  "delete the folder")
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        self.info = {"description": "lens_ros synthetic referring scenes", **(info or {}),
                     "vocabulary": list(VOCABULARY)}
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.refs: list[dict] = []

    def add(self, scene: Scene, split: str, file_stem: str) -> None:
        """Add one scene: its image, every object as an annotation, one ref per expression."""
        image_id = len(self.images) + 1
        h, w = scene.rgb.shape[:2]
        file_name = f"{file_stem}.png"
        bgr = cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(self.folder / "images" / file_name), bgr):
            raise OSError(f"could not write {self.folder / 'images' / file_name}")
        self.images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        ann_ids = []
        for obj in scene.objects:
            ann_id = len(self.annotations) + 1
            x1, y1, x2, y2 = obj.box
            self.annotations.append({
                "id": ann_id, "image_id": image_id,
                "category_id": SHAPES.index(obj.spec.shape) + 1,
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "area": int(obj.mask.sum()), "iscrowd": 0, "segmentation": encode_rle(obj.mask),
                "name": obj.name})
            ann_ids.append(ann_id)
        for e in scene.expressions:
            sent_id = sum(len(r["sentences"]) for r in self.refs)
            obj = scene.objects[e.target]
            self.refs.append({
                "ref_id": len(self.refs), "ann_id": ann_ids[e.target], "image_id": image_id,
                "split": split, "file_name": file_name,
                "category_id": SHAPES.index(obj.spec.shape) + 1,
                "sentences": [{"sent": e.text, "raw": e.text, "tokens": e.text.split(),
                               "sent_id": sent_id}],
                "sent_ids": [sent_id], "level": e.level, "kind": e.kind,
                "reasoning": e.reasoning, "target": e.target_name})

    def close(self) -> Path:
        """Write ``instances.json`` and the refs pickle; returns the dataset folder."""
        instances = {"info": self.info, "images": self.images, "annotations": self.annotations,
                     "categories": [{"id": i + 1, "name": s, "supercategory": "object"}
                                    for i, s in enumerate(SHAPES)]}
        with open(self.folder / "instances.json", "w", encoding="utf-8") as fh:
            json.dump(instances, fh)
        with open(self.folder / REFS_FILE, "wb") as fh:
            pickle.dump(self.refs, fh, protocol=2)  # plain containers only, as the real files
        return self.folder


def export_refcoco(root: str | Path, name: str = "synthetic",
                   sizes: dict[str, int] | None = None, config: SceneConfig | None = None,
                   n_expressions: int = 1,
                   progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate the first ``sizes[split]`` scenes of each split and write them (see module doc).

    Arguments:
      root: the ``refer_seg`` folder. name: dataset folder name.
      sizes: scenes per split, e.g. ``{"train": 2000, "val": 200, "test": 400}``.
      config: scene options (the image size among them).
      n_expressions: commands (refs) per scene, all of the scene's level.
      progress: called with (done, total) after each scene.
    Returns:
      The dataset folder ``root/name``.
    """
    if sizes is None:
        sizes = {"train": 1000, "val": 200, "test": len(SPLITS["test"])}
    config = config or SceneConfig()
    for split, n in sizes.items():
        if split not in SPLITS or not 0 <= n <= len(SPLITS[split]):
            raise ValueError(f"split {split!r} with {n} scenes: splits are {sorted(SPLITS)} "
                             f"with at most {[len(r) for r in SPLITS.values()]} scenes")
    info = {"scene_config": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in asdict(config).items()},
            "splits": {s: [SPLITS[s].start, SPLITS[s].start + n] for s, n in sizes.items()},
            "expressions_per_scene": n_expressions}
    writer = RefcocoWriter(root, name, info)
    total, done = sum(sizes.values()), 0
    for split, n in sizes.items():
        for i in range(n):
            writer.add(make_split_scene(split, i, config, n_expressions=n_expressions), split,
                       f"{split}_{i:07d}")
            done += 1
            if progress is not None:
                progress(done, total)
    return writer.close()

