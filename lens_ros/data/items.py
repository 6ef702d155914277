"""The one item format every training data source produces: :class:`TrainItem`.

RefCOCO/RefCOCO+/RefCOCOg, ReasonSeg and the project's synthetic scenes (``lens_ros.synthetic``)
all yield ``TrainItem``; the trainers turn items into model inputs (``lens_ros.training.batching``).
A source is any map-style sequence of items (``len(src)``, ``src[i] -> TrainItem``); a record that
cannot become a valid item raises :class:`BadRecordError`, which the dataset wrapper counts and
skips (:class:`SkipCounter`), so one bad record never stops a run.

Coordinate frame: pixels of the ORIGINAL image, x to the right, y down, origin at the top-left
corner of the top-left pixel. Boxes are XYXY floats (the COCO ``[x, y, w, h]`` box becomes
``(x, y, x + w, y + h)``). Conversion to the smart-resized LLM image happens later, per model.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

import numpy as np

from lens_ros.core import LensError

log = logging.getLogger(__name__)


class BadRecordError(LensError, ValueError):
    """A dataset record cannot become a :class:`TrainItem`; ``reason`` is a short count key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class TrainItem:
    """One image, one referring question and its ground truth.

    Attributes:
      image (np.ndarray): HxWx3 uint8 RGB, the original image.
      question (str): the referring expression, inserted unchanged into the question template.
      gt_mask (np.ndarray): HxW bool, same H and W as ``image``; True on the target.
      gt_box (tuple): (x1, y1, x2, y2) float pixels of the original image, x1 < x2, y1 < y2.
      reasoning (str): reference reasoning text if the source has one ("" otherwise); not used
        by the rewards, kept for supervised warm-up and logging.
      source (str): where the item comes from, e.g. ``"refcoco/unc/train"``, ``"synthetic"``.
      id (str): identifier unique within ``source`` (e.g. ``"refcoco:1234:0"``).
    """

    image: np.ndarray
    question: str
    gt_mask: np.ndarray
    gt_box: tuple[float, float, float, float]
    reasoning: str = ""
    source: str = ""
    id: str = ""

    def validate(self) -> "TrainItem":
        """Check types, shapes and geometry; returns self or raises :class:`BadRecordError`."""
        img, mask = self.image, self.gt_mask
        if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3
                and img.dtype == np.uint8 and img.shape[0] > 0 and img.shape[1] > 0):
            raise BadRecordError("bad_image", f"{self.id}: image must be HxWx3 uint8 RGB, got "
                                 f"{getattr(img, 'shape', None)} {getattr(img, 'dtype', None)}")
        if not (isinstance(mask, np.ndarray) and mask.shape == img.shape[:2]):
            raise BadRecordError("bad_mask", f"{self.id}: gt_mask shape "
                                 f"{getattr(mask, 'shape', None)} != image {img.shape[:2]}")
        if mask.dtype != bool:
            self.gt_mask = mask = mask > 0
        if not mask.any():
            raise BadRecordError("empty_mask", f"{self.id}: the ground-truth mask is empty")
        if not isinstance(self.question, str) or not self.question.strip():
            raise BadRecordError("empty_question", f"{self.id}: the question is empty")
        x1, y1, x2, y2 = (float(v) for v in self.gt_box)
        h, w = img.shape[:2]
        if not (np.isfinite([x1, y1, x2, y2]).all() and x2 > x1 and y2 > y1
                and x2 > 0 and y2 > 0 and x1 < w and y1 < h):
            raise BadRecordError("degenerate_box", f"{self.id}: box {self.gt_box} is empty, "
                                 f"inverted or outside the {w}x{h} image")
        self.gt_box = (x1, y1, x2, y2)
        return self


def scale_box(box: tuple[float, float, float, float], from_hw: tuple[int, int],
              to_hw: tuple[int, int], round_to_int: bool = True) -> list[float]:
    """Map an XYXY box from an image of size ``from_hw`` (H, W) to one of size ``to_hw``.

    x scales by W'/W and y by H'/H. With ``round_to_int`` the result is rounded as the reference
    does for its ``solution`` (``round(x1 * W' / W)``...), giving integer pixels of the resized
    image.
    """
    sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
    out = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
    return [float(round(v)) for v in out] if round_to_int else out


def box_from_mask(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight XYXY box of the True pixels of an HxW mask, as ReasonSeg's reference computes it.

    The reference takes the min and max pixel indices (x2 = last column, not one past it).
    Raises :class:`BadRecordError` ("empty_mask") when no pixel is set.
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise BadRecordError("empty_mask", "the mask is empty, so it has no box")
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


class SkipCounter:
    """Counts skipped records by reason and logs the first of each kind."""

    def __init__(self):
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, err: BadRecordError) -> None:
        """Count ``err`` under its reason; log a warning the first time a reason appears."""
        if self.counts[err.reason] == 0:
            log.warning("skipping bad record (%s): %s; further ones are only counted",
                        err.reason, err)
        self.counts[err.reason] += 1

    @property
    def total(self) -> int:
        """Number of records skipped so far."""
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        """The counts by reason, for logging and reports."""
        return dict(self.counts)
