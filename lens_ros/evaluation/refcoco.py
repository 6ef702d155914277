"""RefCOCO-format evaluation splits: ``refs(<split_by>).p`` + ``instances.json`` + images.

Layout (the one users already have, as the reference and ``lens_ros.training`` read it)::

    ROOT/refcoco/refs(unc).p       ROOT/refcoco/instances.json
    ROOT/refcoco+/refs(unc).p      ROOT/refcoco+/instances.json
    ROOT/refcocog/refs(umd).p      ROOT/refcocog/instances.json
    ROOT/images/mscoco/images/train2014/COCO_train2014_000000xxxxxx.jpg

Any other folder ``ROOT/NAME`` with one ``refs(*).p`` and ``instances.json`` is read the same way
(the synthetic set's export). Images are looked up by the ``file_name`` of ``instances.json`` in
``image_dir`` when given, else in ``ROOT/images/mscoco/images/train2014``, ``ROOT/NAME/images``
and ``ROOT/images``.

The unit is the ref: one object (annotation) with one or more referring sentences. The pickle is
read with the training package's restricted unpickler (plain containers and numbers only).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lens_ros.data.masks import decode_annotation
from lens_ros.data.sources import DEFAULT_SPLIT_BY
from lens_ros.data.safe_pickle import safe_load
#: the paper's eight splits, in its table order
PAPER_SPLITS = ("refcoco.unc.val", "refcoco.unc.testA", "refcoco.unc.testB",
                "refcoco+.unc.val", "refcoco+.unc.testA", "refcoco+.unc.testB",
                "refcocog.umd.val", "refcocog.umd.test")


@dataclass(frozen=True)
class SplitName:
    """One evaluation split, e.g. ``refcocog.umd.val``."""

    dataset: str  #: folder under the data root (refcoco, refcoco+, refcocog, or e.g. synthetic)
    split_by: str | None  #: the ``refs(<split_by>).p`` variant; None = the folder's only one
    split: str  #: the ``split`` value of the refs (val, testA, testB, test, ...)

    def __str__(self) -> str:
        if self.split_by is None:
            return f"{self.dataset}/{self.split}"
        return f"{self.dataset}.{self.split_by}.{self.split}"

    @property
    def slug(self) -> str:
        """File-name-safe form, e.g. ``refcoco+_unc_testA``."""
        name = f"{self.dataset}_{self.split_by or 'any'}_{self.split}"
        return re.sub(r"[^A-Za-z0-9+_-]", "_", name)


def parse_split(text: str) -> SplitName:
    """``refcoco.unc.val``, ``refcoco/val`` or ``synthetic/test`` -> :class:`SplitName`.

    ``DATASET/SPLIT`` takes the public datasets' SPLIT_BY (unc, umd); for other folders it means
    the folder's only ``refs(*).p``.

    Raises:
      ValueError: when the text has neither form.
    """
    parts = text.split("/") if "/" in text else text.split(".")
    if len(parts) == 2 and all(parts):
        return SplitName(parts[0], DEFAULT_SPLIT_BY.get(parts[0]), parts[1])
    if len(parts) == 3 and all(parts):
        return SplitName(parts[0], parts[1], parts[2])
    raise ValueError(f"split {text!r} is not DATASET.SPLIT_BY.SPLIT (e.g. refcocog.umd.val) "
                     "or DATASET/SPLIT (e.g. refcoco/testA)")


@dataclass
class RefSample:
    """One ref of a split: an object, its sentences and its ground truth.

    ``gt_box`` is XYXY float pixels of the original image (from the COCO ``bbox`` x, y, w, h).
    """

    ref_id: int
    ann_id: int
    image_id: int
    image_path: Path
    height: int
    width: int
    sentences: list[str]
    sent_ids: list[int]
    gt_box: tuple[float, float, float, float]
    segmentation: object = field(repr=False)
    level: str | None = None  #: difficulty level (synthetic set); None for RefCOCO

    def gt_mask(self) -> np.ndarray:
        """HxW uint8 ground truth (parts summed, unclamped, as the reference does)."""
        return decode_annotation(self.segmentation, self.height, self.width)


def _refs_file(folder: Path, split_by: str | None) -> Path:
    if split_by:
        path = folder / f"refs({split_by}).p"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; check --data-root and the split name")
        return path
    found = sorted(folder.glob("refs(*).p"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected exactly one refs(*).p in {folder}, found "
                                f"{[p.name for p in found]}; name the split as "
                                "DATASET.SPLIT_BY.SPLIT")
    return found[0]


def _image_dirs(root: Path, dataset: str, image_dir: Path | None) -> list[Path]:
    if image_dir is not None:
        return [Path(image_dir)]
    return [root / "images" / "mscoco" / "images" / "train2014", root / dataset / "images",
            root / "images"]


def load_split(root: str | Path, split: str | SplitName,
               image_dir: str | Path | None = None) -> list[RefSample]:
    """All refs of one split, in the pickle's order.

    Arguments:
      root: the data root (the reference's ``refer_seg`` folder).
      split: e.g. ``refcoco.unc.testA`` (see :func:`parse_split`).
      image_dir: folder holding the images by ``file_name``; searched in the defaults when None.
    Raises:
      FileNotFoundError: missing refs pickle, instances.json, or an empty split (names the path).
      UnsafePickleError: the refs pickle references anything but plain containers and numbers.
    """
    root = Path(root)
    name = parse_split(split) if isinstance(split, str) else split
    folder = root / name.dataset
    refs = safe_load(_refs_file(folder, name.split_by))  # the one restricted unpickler
    inst_path = folder / "instances.json"
    if not inst_path.is_file():
        raise FileNotFoundError(f"{inst_path} does not exist; a RefCOCO-format dataset needs it")
    with open(inst_path, encoding="utf-8") as fh:
        instances = json.load(fh)
    images = {int(im["id"]): im for im in instances["images"]}
    anns = {int(a["id"]): a for a in instances["annotations"]}
    dirs = _image_dirs(root, name.dataset, Path(image_dir) if image_dir else None)
    samples = []
    for ref in refs:
        if ref.get("split") != name.split:
            continue
        ann, img = anns[int(ref["ann_id"])], images[int(ref["image_id"])]
        path = next((d / img["file_name"] for d in dirs if (d / img["file_name"]).is_file()),
                    dirs[0] / img["file_name"])  # missing: the evaluator records an error
        x, y, w, h = (float(v) for v in ann["bbox"])
        sentences = ref["sentences"]
        samples.append(RefSample(
            ref_id=int(ref["ref_id"]), ann_id=int(ref["ann_id"]), image_id=int(ref["image_id"]),
            image_path=path, height=int(img["height"]), width=int(img["width"]),
            sentences=[s.get("sent", s.get("raw", "")) for s in sentences],
            sent_ids=[int(s.get("sent_id", i)) for i, s in enumerate(sentences)],
            gt_box=(x, y, x + w, y + h), segmentation=ann["segmentation"],
            level=ref.get("level", ann.get("level"))))
    if not samples:
        raise FileNotFoundError(f"split {name} has no refs in {folder} (known splits: "
                                f"{sorted({str(r.get('split')) for r in refs})})")
    return samples
