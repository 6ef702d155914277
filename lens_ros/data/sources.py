"""Training data sources that yield :class:`~lens_ros.data.items.TrainItem`.

* :class:`ReferSegSource`: RefCOCO / RefCOCO+ / RefCOCOg in the LISA layout users already have::

      refer_seg/
        refcoco/   refs(unc).p  instances.json
        refcoco+/  refs(unc).p  instances.json
        refcocog/  refs(umd).p  instances.json
        images/mscoco/images/train2014/COCO_train2014_000000123456.jpg

  ``refs(*).p`` is read with the restricted unpickler (:mod:`lens_ros.data.safe_pickle`);
  masks are decoded with pycocotools (polygons, compressed or uncompressed RLE, through
  ``lens_ros.data.masks.decode_annotation``, parts merged); the COCO box
  ``[x, y, w, h]`` becomes XYXY. One item per ref with a sentence drawn per epoch (the
  reference), or one item per sentence.
* :class:`ReasonSegSource`: ReasonSeg-style folders of ``*.jpg`` + LabelMe-style ``*.json``
  (``shapes[{label, points}]``, ``text``), masks drawn as the reference does.

Records that cannot become a valid item raise :class:`BadRecordError` from ``__getitem__`` (or
are dropped and counted at indexing time); :class:`ItemDataset` skips and counts them.
Sentence draws are a pure function of (seed, index, epoch), so the G copies of one prompt that
TRL's sampler hands to several ranks see the same sentence.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import random
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np

from lens_ros.data.masks import decode_annotation
from lens_ros.data.items import BadRecordError, SkipCounter, TrainItem, box_from_mask
from lens_ros.data.safe_pickle import safe_load

log = logging.getLogger(__name__)

#: The split file each RefCOCO variant uses in the reference (``dataset.py:436-452``).
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}


class ItemSource(Protocol):
    """Anything map-style that yields TrainItems (the synthetic generator plugs in here)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> TrainItem: ...


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB: the stored pixels, EXIF orientation IGNORED.

    The one image reader of training data, ``lens-eval`` and file inputs. COCO/RefCOCO and
    ReasonSeg annotate the stored pixel grid, and the reference reads images without applying
    EXIF orientation (PIL ``Image.open`` without ``exif_transpose``, ``cv2.imread`` of a file
    without the tag), so masks and boxes only line up with the stored grid. ``cv2.IMREAD_COLOR``
    alone would rotate tagged JPEGs (Orientation 5-8 swaps H and W), hence
    ``IMREAD_IGNORE_ORIENTATION``.

    Raises :class:`BadRecordError` ("missing_image") when the file is absent or unreadable.
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise BadRecordError("missing_image", f"cannot read image {path} (missing or corrupt)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _draw(seed: int, index: int, epoch: int, n: int) -> int:
    """A deterministic choice in range(n) for (seed, index, epoch)."""
    return random.Random(f"{seed}:{index}:{epoch}").randrange(n)


class ReferSegSource:
    """One RefCOCO-family dataset split as a sequence of TrainItems.

    Arguments:
      root: the ``refer_seg`` folder.
      dataset: ``refcoco``, ``refcoco+`` or ``refcocog``.
      split: the ``split`` value of the refs to keep (``train``, ``val``, ``testA``...).
      split_by: refs file tag (``unc``, ``umd``, ``google``); default: :data:`DEFAULT_SPLIT_BY`.
      image_dir: folder of the images; default ``root/dataset/images`` when it exists (as
        ``lens_ros.synthetic`` exports), else ``root/images/mscoco/images/train2014``.
      per: ``"ref"`` (one item per ref, sentence drawn per epoch) or ``"sentence"``.
      seed: seed of the sentence draw.
      skips: counter that receives the records dropped while indexing.
    """

    def __init__(self, root: str | os.PathLike, dataset: str = "refcoco", split: str = "train",
                 split_by: str | None = None, image_dir: str | os.PathLike | None = None,
                 per: str = "ref", seed: int = 0, skips: SkipCounter | None = None):
        if per not in ("ref", "sentence"):
            raise ValueError(f"per={per!r}: use 'ref' (one item per ref, random sentence) or "
                             "'sentence' (one item per sentence)")
        root = Path(root)
        split_by = split_by or DEFAULT_SPLIT_BY.get(dataset, "unc")
        refs_path = root / dataset / f"refs({split_by}).p"
        inst_path = root / dataset / "instances.json"
        for p in (refs_path, inst_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found; expected the LISA layout "
                                        f"refer_seg/{dataset}/refs({split_by}).p + instances.json")
        self.name = f"{dataset}/{split_by}/{split}"
        own = root / dataset / "images"  # lens_ros.synthetic exports keep images beside the refs
        self.image_dir = Path(image_dir) if image_dir else (
            own if own.is_dir() else root / "images/mscoco/images/train2014")
        self.per, self.seed, self.epoch = per, seed, 0
        refs = safe_load(refs_path)
        with open(inst_path, encoding="utf-8") as fh:
            inst = json.load(fh)
        self.anns = {a["id"]: a for a in inst.get("annotations", [])}
        self.images = {im["id"]: im for im in inst.get("images", [])}
        skips = skips if skips is not None else SkipCounter()
        self.refs: list[dict] = []
        self.index: list[tuple[int, int | None]] = []
        for ref in refs if isinstance(refs, list) else []:
            if not isinstance(ref, dict) or ref.get("split") != split:
                continue
            try:
                sents = self._check_ref(ref)
            except BadRecordError as err:
                skips.add(err)
                continue
            self.refs.append(ref)
            r = len(self.refs) - 1
            self.index.extend([(r, s) for s in range(len(sents))] if per == "sentence"
                              else [(r, None)])
        log.info("%s: %d items from %d refs", self.name, len(self.index), len(self.refs))

    def _check_ref(self, ref: dict) -> list[str]:
        """Cheap checks at indexing time; returns the ref's sentences."""
        rid = ref.get("ref_id")
        sents = [s.get("sent", "") for s in ref.get("sentences", []) if isinstance(s, dict)]
        sents = [s for s in sents if isinstance(s, str) and s.strip()]
        if not sents:
            raise BadRecordError("no_sentence", f"{self.name} ref {rid}: no sentences")
        ann = self.anns.get(ref.get("ann_id"))
        if ann is None or ref.get("image_id") not in self.images:
            raise BadRecordError("missing_annotation",
                                 f"{self.name} ref {rid}: annotation or image entry missing")
        bbox = ann.get("bbox") or [0, 0, 0, 0]
        if len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
            raise BadRecordError("degenerate_box", f"{self.name} ref {rid}: box {bbox}")
        if not ann.get("segmentation"):
            raise BadRecordError("empty_mask", f"{self.name} ref {rid}: no segmentation")
        return sents

    def set_epoch(self, epoch: int) -> None:
        """Draw new sentences (``per="ref"``) for the next pass over the data."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> TrainItem:
        r, s = self.index[i]
        ref = self.refs[r]
        sents = [x["sent"] for x in ref["sentences"] if isinstance(x, dict)
                 and isinstance(x.get("sent"), str) and x["sent"].strip()]
        if s is None:
            s = _draw(self.seed, i, self.epoch, len(sents))
        ann, im = self.anns[ref["ann_id"]], self.images[ref["image_id"]]
        fname = im.get("file_name") or f"COCO_train2014_{ref['image_id']:012d}.jpg"
        image = read_rgb(self.image_dir / fname)
        h, w = image.shape[:2]
        if (im.get("height"), im.get("width")) not in ((h, w), (None, None)):
            raise BadRecordError("size_mismatch", f"{fname}: file is {w}x{h} but instances.json "
                                 f"says {im.get('width')}x{im.get('height')}")
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        try:  # parts are merged: the reference's sum(...) > 0
            mask = decode_annotation(ann["segmentation"], h, w) > 0
        except (TypeError, KeyError, ValueError, IndexError) as err:
            raise BadRecordError("bad_segmentation", f"{self.name} ref {ref.get('ref_id')}: "
                                 f"undecodable segmentation ({err})") from err
        return TrainItem(image=image, question=sents[s], gt_mask=mask,
                         gt_box=(x, y, x + bw, y + bh), source=self.name,
                         id=f"{self.name}:{ref.get('ref_id')}:{s}").validate()


def reason_seg_mask(shapes: list[dict], height: int, width: int) -> np.ndarray:
    """ReasonSeg's mask: polygons drawn largest first; "ignore" -> 255, "flag" skipped, else 1.

    Returns the HxW uint8 label map (0 background, 1 target, 255 ignore), as the reference's
    ``get_mask_from_json``; the training target is ``== 1``.
    """
    polys = []
    for shape in shapes:
        label = str(shape.get("label", "")).lower()
        if label == "flag":
            continue
        pts = np.asarray(shape.get("points", []), dtype=np.int32).reshape(1, -1, 2)
        tmp = np.zeros((height, width), dtype=np.uint8)
        cv2.polylines(tmp, pts, True, 1, 1)
        cv2.fillPoly(tmp, pts, 1)
        polys.append((int(tmp.sum()), 255 if "ignore" in label else 1, pts))
    out = np.zeros((height, width), dtype=np.uint8)
    for _, value, pts in sorted(polys, key=lambda p: -p[0]):
        cv2.polylines(out, pts, True, value, 1)
        cv2.fillPoly(out, pts, value)
    return out


class ReasonSegSource:
    """A ReasonSeg-style folder (``*.jpg`` + ``*.json``) as a sequence of TrainItems.

    Arguments:
      directory: e.g. ``reason_seg/ReasonSeg/train``.
      per: ``"image"`` (one item per image, sentence drawn per epoch) or ``"sentence"``.
      seed: seed of the sentence draw.
    """

    def __init__(self, directory: str | os.PathLike, per: str = "image", seed: int = 0):
        if per not in ("image", "sentence"):
            raise ValueError(f"per={per!r}: use 'image' or 'sentence'")
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"ReasonSeg folder {self.directory} not found")
        self.name = f"reasonseg/{self.directory.name}"
        self.per, self.seed, self.epoch = per, seed, 0
        self.images = sorted(glob.glob(str(self.directory / "*.jpg")))
        self.index: list[tuple[int, int | None]] = []
        for i, path in enumerate(self.images):
            n = len(self._texts(path)) if per == "sentence" else 1
            self.index.extend([(i, s) for s in range(n)] if per == "sentence" else [(i, None)])

    @staticmethod
    def _load_json(path: str) -> dict:
        jpath = os.path.splitext(path)[0] + ".json"
        try:
            with open(jpath, encoding="utf-8") as fh:
                return json.load(fh)
        except UnicodeDecodeError:  # some ReasonSeg files are cp1252, as the reference handles
            with open(jpath, encoding="cp1252") as fh:
                return json.load(fh)
        except (OSError, json.JSONDecodeError) as err:
            raise BadRecordError("bad_json", f"{jpath}: {err}") from err

    def _texts(self, path: str) -> list[str]:
        try:
            text = self._load_json(path).get("text", [])
        except BadRecordError:
            return []
        return [t for t in ([text] if isinstance(text, str) else text)
                if isinstance(t, str) and t.strip()]

    def set_epoch(self, epoch: int) -> None:
        """Draw new sentences for the next pass over the data."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> TrainItem:
        k, s = self.index[i]
        path = self.images[k]
        anno = self._load_json(path)
        texts = self._texts(path)
        if not texts:
            raise BadRecordError("no_sentence", f"{path}: no text")
        s = _draw(self.seed, i, self.epoch, len(texts)) if s is None else s
        image = read_rgb(path)
        h, w = image.shape[:2]
        mask = reason_seg_mask(anno.get("shapes", []), h, w) == 1
        x1, y1, x2, y2 = box_from_mask(mask)
        return TrainItem(image=image, question=texts[s], gt_mask=mask,
                         gt_box=(x1, y1, max(x2, x1 + 1.0), max(y2, y1 + 1.0)),
                         source=self.name, id=f"{self.name}:{Path(path).stem}:{s}").validate()


class ItemDataset:
    """Several sources concatenated; bad records are skipped (deterministically) and counted.

    ``ds[i]`` returns a valid TrainItem: when the record at ``i`` is bad, the next indices are
    tried in order, so every rank and every copy of a prompt group resolves ``i`` the same way.
    """

    def __init__(self, sources: Sequence[ItemSource], skips: SkipCounter | None = None,
                 max_tries: int = 100):
        self.sources = [s for s in sources if len(s) > 0]
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])
        self.skips = skips if skips is not None else SkipCounter()
        self.max_tries = max_tries
        if self.offsets[-1] == 0:
            raise ValueError("no training items: every data source is empty or missing; check "
                             "the data paths in the config (refer_seg_root, reason_seg_dirs...)")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to every source that draws sentences."""
        for s in self.sources:
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)

    def _get(self, i: int) -> TrainItem:
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.sources[k][i - int(self.offsets[k])]

    def __getitem__(self, i: int) -> TrainItem:
        n = len(self)
        for t in range(self.max_tries):
            try:
                return self._get((int(i) + t) % n)
            except BadRecordError as err:
                self.skips.add(err)
        raise BadRecordError("too_many_bad", f"{self.max_tries} consecutive bad records from "
                             f"index {i}; skipped so far: {self.skips.as_dict()}")
