"""Run a :class:`~lens_ros.model.LensSegmenter` over RefCOCO-format refs and record every sentence.

As in the reference, all sentences of a ref go through the model as one batch
(``segment_batch``) on the shared image, and each is scored against the ref's mask at the original
image resolution. One JSON line per sentence is appended (and flushed) as soon as its ref is done,
so an interrupted run resumes: refs whose sentences are all recorded are skipped, and a ref with
missing sentences is re-run as a whole batch (same batch, same result) writing only the missing
ones. Split metrics are computed from the records alone (:mod:`lens_ros.evaluation.reports`).

Every record carries the model's fingerprint id (:mod:`lens_ros.evaluation.fingerprint`); resuming
over records of another model or other inference settings is refused. Images are read by
:func:`lens_ros.data.sources.read_rgb`, the reader of training (stored pixels, no EXIF rotation).
A prediction whose size differs from the ground truth is recorded as a MODEL_ERROR (scored as an
empty mask), never silently replaced.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lens_ros.core import BadImageError, LensError, Segmentation, Status
from lens_ros.data.items import BadRecordError
from lens_ros.data.masks import encode_rle
from lens_ros.data.sources import read_rgb
from lens_ros.evaluation.fingerprint import check_resumable
from lens_ros.evaluation.metrics import box_iou, intersection_union, sentence_iou
from lens_ros.evaluation.refcoco import RefSample

log = logging.getLogger(__name__)


def read_records(path: str | Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (interrupted write) is dropped and the file is
    rewritten without it, so that appending can continue safely. Missing file: []."""
    path = Path(path)
    if not path.is_file():
        return []
    records, torn = [], False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                torn = True
    if torn:
        log.warning("dropping unreadable lines of %s (interrupted write); they are recomputed",
                    path)
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    return records


def sentence_record(split: str, sample: RefSample, index: int, seg: Segmentation,
                    gt: np.ndarray, ms: float, fingerprint: dict | None = None) -> dict:
    """The JSON record of one sentence: ids, the scores and the prediction (mask as COCO RLE)."""
    pred = np.asarray(seg.mask, dtype=bool)
    status, error = seg.status.name, seg.error
    if pred.shape != gt.shape:
        if pred.size:  # a real prediction of the wrong size: an error, not a zero
            status = Status.MODEL_ERROR.name
            error = (f"predicted mask is {pred.shape[0]}x{pred.shape[1]} but the ground truth "
                     f"is {gt.shape[0]}x{gt.shape[1]}; scored as an empty mask")
        # failures before the image size was known carry a 0x0 mask
        pred = np.zeros(gt.shape, dtype=bool)
    inter, union = intersection_union(pred, gt)
    box = [float(v) for v in seg.box] if seg.box is not None else None
    return {
        "split": split, "ref_id": sample.ref_id, "ann_id": sample.ann_id,
        "image_id": sample.image_id, "sent_id": sample.sent_ids[index], "sent_index": index,
        "sentence": sample.sentences[index], "level": sample.level,
        "image": str(sample.image_path), "height": sample.height, "width": sample.width,
        "intersection": inter, "union": union, "iou": sentence_iou(inter, union),
        "gt_box": list(sample.gt_box), "box": box, "box_iou": box_iou(box, sample.gt_box),
        "score": float(seg.score), "status": status, "error": error,
        "answer": seg.answer, "reasoning": seg.reasoning, "truncated": bool(seg.truncated),
        "ms": float(ms), "pred_rle": encode_rle(pred), "time": time.time(),
        "model_id": (fingerprint or {}).get("id"),
        "checkpoint": (fingerprint or {}).get("checkpoint"),
    }


class Evaluator:
    """Evaluates one segmenter on RefCOCO-format samples, writing per-sentence JSONL records.

    Arguments:
      segmenter: a ``LensSegmenter`` (anything with ``set_image`` and ``segment_batch``).
      reasoning (bool | None): passed to ``segment_batch``; None = the checkpoint's default.
      progress (bool): show a tqdm bar per split.
      fingerprint (dict | None): :func:`~lens_ros.evaluation.fingerprint.model_fingerprint` of
        the model; stamped on every record, and existing records must carry the same id.
    """

    def __init__(self, segmenter, reasoning: bool | None = None, progress: bool = True,
                 fingerprint: dict | None = None):
        self.segmenter = segmenter
        self.fingerprint = fingerprint or {"id": None, "checkpoint": None}
        self.reasoning = reasoning
        self.progress = progress
        self.model_calls = 0  #: ``segment_batch`` calls made (refs actually computed)

    def _segment_ref(self, sample: RefSample) -> tuple[list[Segmentation], float]:
        """All sentences of one ref; errors become failure results, never exceptions."""
        t0 = time.perf_counter()
        shape = (sample.height, sample.width)
        try:
            try:
                rgb = read_rgb(sample.image_path)
            except BadRecordError as err:  # the training reader's error: here a BAD_IMAGE record
                raise BadImageError(f"{err}; check --image-dir") from None
            self.segmenter.set_image(rgb)
        except LensError as err:
            return [Segmentation.from_error(err, s, shape) for s in sample.sentences], \
                (time.perf_counter() - t0) * 1e3
        self.model_calls += 1
        try:
            segs = list(self.segmenter.segment_batch(list(sample.sentences),
                                                     reasoning=self.reasoning))
        except LensError as err:  # one bad sentence must not sink its siblings: retry one by one
            log.warning("ref %d: batch failed (%s); segmenting its sentences one by one",
                        sample.ref_id, err)
            segs = []
            for sentence in sample.sentences:
                try:
                    segs.append(self.segmenter.segment(sentence, reasoning=self.reasoning))
                except LensError as one:
                    segs.append(Segmentation.from_error(one, sentence, shape))
        return segs, (time.perf_counter() - t0) * 1e3

    def evaluate(self, split: str, samples: Iterable[RefSample],
                 records_path: str | Path) -> list[dict]:
        """Evaluate ``samples`` of ``split``, appending to ``records_path``; returns all records
        of this split (old and new) in sample order."""
        records_path = Path(records_path)
        records_path.parent.mkdir(parents=True, exist_ok=True)
        samples = list(samples)
        old = [r for r in read_records(records_path) if r.get("split") == split]
        check_resumable(old, self.fingerprint, records_path)
        done = {(r["ref_id"], r["sent_index"]): r for r in old}
        bar = tqdm(samples, desc=split, unit="ref", disable=not self.progress, dynamic_ncols=True)
        computed = 0
        with open(records_path, "a", encoding="utf-8") as out:
            for sample in bar:
                missing = [i for i in range(len(sample.sentences))
                           if (sample.ref_id, i) not in done]
                if not missing:
                    continue
                segs, ms = self._segment_ref(sample)
                gt = sample.gt_mask()
                for i in missing:
                    rec = sentence_record(split, sample, i, segs[i], gt, ms / len(segs),
                                          self.fingerprint)
                    out.write(json.dumps(rec) + "\n")
                    done[(sample.ref_id, i)] = rec
                out.flush()
                computed += 1
                bar.set_postfix(computed=computed, refresh=False)
        bar.close()
        return [done[(s.ref_id, i)] for s in samples for i in range(len(s.sentences))
                if (s.ref_id, i) in done]
