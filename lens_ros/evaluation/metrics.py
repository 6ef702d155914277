"""Referring-segmentation metrics, pure numpy, defined exactly as the LENS reference computes them.

Conventions (reference ``eval/evaluate_res2.py`` + ``eval/utils.py``):
  * A prediction is an HxW bool mask at the **original image resolution**.
  * A ground truth is an HxW integer mask: 1 = target, 0 = background, ``ignore_index`` (255) =
    not scored. The reference sums the parts of a multi-part annotation without clamping, so an
    overlap pixel has the value 2; it is neither target nor ignored (``torch.histc(min=0, max=1)``
    skips it), and a prediction there counts as a false positive. We keep that behaviour.
  * The unit is the **sentence**: every sentence of a ref is scored against the ref's mask, and all
    split-level sums and means run over sentences, not refs.
  * Boxes are XYXY float pixels; no +1 pixel convention.

All functions return Python floats/ints so that results serialise to JSON unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IGNORE_INDEX = 255  #: ground-truth value of pixels that are not scored
PRECISION_THRESHOLDS = (0.5, 0.7, 0.9)  #: IoU thresholds of precision@k
BOX_ACC_THRESHOLD = 0.5  #: box IoU threshold of box accuracy


def intersection_union(pred: np.ndarray, gt: np.ndarray,
                       ignore_index: int = IGNORE_INDEX) -> tuple[int, int]:
    """Foreground intersection and union of one sentence, in pixels.

    Arguments:
      pred (np.ndarray): HxW bool (or 0/1) predicted mask.
      gt (np.ndarray): HxW integer ground truth; 1 = target, ``ignore_index`` = not scored, any
        other value = background (this includes the value 2 of overlapping annotation parts).

    Returns:
      (I, U): I = #(pred & gt == 1), U = #(pred & gt != ignore) + #(gt == 1) - I.

    Raises:
      ValueError: when the shapes differ (the prediction must be at the GT's resolution).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}; "
                         "upsample the prediction to the original image size first")
    pred = pred.astype(bool) & (gt != ignore_index)
    target = gt == 1
    inter = int(np.count_nonzero(pred & target))
    union = int(np.count_nonzero(pred)) + int(np.count_nonzero(target)) - inter
    return inter, union


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two HxW bool masks, as one sentence of gIoU: 1.0 when both are empty."""
    return sentence_iou(*intersection_union(pred, np.asarray(gt, dtype=bool).astype(np.uint8)))


def sentence_iou(intersection: float, union: float) -> float:
    """IoU of one sentence: I / U, and 1.0 when the union is empty (empty GT, empty prediction).

    The reference divides by ``U + 1e-5`` and adds 1.0 where ``U == 0``; for ``U >= 1`` pixel that
    differs from I / U by less than 1e-5 relative, so the exact quotient is used here.
    """
    return 1.0 if union == 0 else float(intersection) / float(union)


def ciou(intersections: Sequence[float], unions: Sequence[float]) -> float:
    """Cumulative IoU over a split: sum(I) / sum(U) over all sentences; 0.0 when sum(U) == 0.

    Sentences with an empty union add nothing to either sum (the reference's ``+1e-8`` makes an
    all-empty split 0.0 as well).
    """
    total_u = float(np.sum(np.asarray(unions, dtype=np.float64)))
    if total_u <= 0:
        return 0.0
    return float(np.sum(np.asarray(intersections, dtype=np.float64))) / total_u


def giou(ious: Sequence[float]) -> float:
    """Generalised IoU of a split: the mean per-sentence IoU (empty unions already count 1.0,
    see :func:`sentence_iou`); 0.0 for an empty split."""
    return _mean(ious)


def _mean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else 0.0


def precision_at(ious: Sequence[float], threshold: float) -> float:
    """Fraction of sentences whose IoU is >= ``threshold`` (P@k as in LAVT/CRIS); 0.0 if empty."""
    arr = np.asarray(ious, dtype=np.float64)
    return float(np.count_nonzero(arr >= threshold)) / arr.size if arr.size else 0.0


def box_iou(pred: Sequence[float] | None, gt: Sequence[float] | None) -> float:
    """IoU of two XYXY boxes in pixels, no +1 convention.

    An inverted box (x2 < x1 or y2 < y1) has zero area. Returns 0.0 when either box is None or
    the union is empty (the reference would divide by zero there).
    """
    if pred is None or gt is None:
        return 0.0
    ax1, ay1, ax2, ay2 = (float(v) for v in pred)
    bx1, by1, bx2, by2 = (float(v) for v in gt)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    area_a = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1)
    area_b = max(0.0, bx2 - bx1) * max(0.0, by2 - by1)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def box_accuracy(box_ious: Sequence[float], threshold: float = BOX_ACC_THRESHOLD) -> float:
    """Fraction of sentences whose answer box has IoU >= ``threshold`` with the GT box (a missing
    box counts as IoU 0); 0.0 for an empty split."""
    return precision_at(box_ious, threshold)


def summarize(intersections: Sequence[float], unions: Sequence[float],
              box_ious: Sequence[float] | None = None) -> dict:
    """All split-level metrics from per-sentence values (fractions in [0, 1]).

    Arguments:
      intersections, unions: per-sentence foreground I and U in pixels (same length N).
      box_ious: per-sentence answer-box IoU (None: box metrics omitted).

    Returns:
      dict with ``n``, ``ciou``, ``giou``, ``p@0.5``, ``p@0.7``, ``p@0.9`` and, with boxes,
      ``box_acc@0.5`` and ``box_iou`` (mean box IoU, the reference's ``box_iou``).
    """
    if len(intersections) != len(unions):
        raise ValueError(f"{len(intersections)} intersections but {len(unions)} unions; "
                         "pass one value per sentence for both")
    ious = [sentence_iou(i, u) for i, u in zip(intersections, unions)]
    out = {"n": len(ious), "ciou": ciou(intersections, unions), "giou": giou(ious)}
    for t in PRECISION_THRESHOLDS:
        out[f"p@{t}"] = precision_at(ious, t)
    if box_ious is not None:
        out[f"box_acc@{BOX_ACC_THRESHOLD}"] = box_accuracy(box_ious)
        out["box_iou"] = _mean(box_ious)
    return out


def paired_bootstrap(before: Sequence[dict], after: Sequence[dict], metric: str,
                     resamples: int = 2000, seed: int = 0) -> dict:
    """Difference ``after - before`` of a split metric on the SAME sentences, with a 95 %
    percentile-bootstrap interval (paired: each resample draws images once and scores both
    models on all their sentences, so scene difficulty cancels out and sentences of one image
    stay together; records without ``image_id`` are their own cluster).

    Arguments:
      before, after: per-sentence records of two models (``intersection``, ``union``,
        ``box_iou``), paired by ``(ref_id, sent_index)``; sentences present in only one are
        ignored.
      metric: a key of :func:`summarize` (``ciou``, ``giou``, ``box_acc@0.5``, ...).
      resamples, seed: bootstrap size and seed.
    Returns:
      dict with ``n`` (paired sentences), ``before``, ``after``, ``delta`` and ``low`` /
      ``high`` (the 2.5 / 97.5 percentiles of the resampled delta); ``delta`` is 0 and the
      interval (0, 0) when nothing pairs.
    """
    def key(r: dict) -> tuple:
        return r["ref_id"], r.get("sent_index", 0)

    b = {key(r): r for r in before}
    pairs = [(b[key(r)], r) for r in after if key(r) in b]
    if not pairs:
        return {"n": 0, "before": 0.0, "after": 0.0, "delta": 0.0, "low": 0.0, "high": 0.0}
    cols = {}
    for side, idx in (("before", 0), ("after", 1)):
        recs = [p[idx] for p in pairs]
        cols[side] = tuple(np.asarray([r[k] for r in recs], dtype=np.float64)
                           for k in ("intersection", "union", "box_iou"))

    def score(side: str, take: np.ndarray) -> float:
        inter, union, box = (c[take] for c in cols[side])
        return summarize(inter, union, box)[metric]

    everything = np.arange(len(pairs))
    clusters: dict = {}
    for i, (_, r) in enumerate(pairs):
        clusters.setdefault(r.get("image_id", ("sentence", i)), []).append(i)
    members = list(clusters.values())
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(resamples):
        picks = rng.integers(0, len(members), len(members))
        take = np.concatenate([members[c] for c in picks])
        deltas.append(score("after", take) - score("before", take))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    b_all, a_all = score("before", everything), score("after", everything)
    return {"n": len(pairs), "before": b_all, "after": a_all, "delta": a_all - b_all,
            "low": float(lo), "high": float(hi)}
