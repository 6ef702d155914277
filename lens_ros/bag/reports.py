"""Per-frame reports of ``lens-bag run``: CSV rows, records back into results, overlay strip
and video."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np

from lens_ros.core import Segmentation, Status, Timings
from lens_ros.data.masks import decode_rle

log = logging.getLogger(__name__)
CSV_COLUMNS = ("frame", "t_ns", "stamp_ns", "command", "status", "error", "x1", "y1", "x2", "y2",
               "score", "model_ms", "conv_ms", "answer")
THUMB_HEIGHT = 160  #: pixel height of each overlay in the PNG strip


def record_to_segmentation(rec: dict) -> Segmentation | None:
    """The Segmentation a frame record stands for (None for a SKIPPED frame)."""
    if rec["status"] not in Status.__members__:
        return None
    return Segmentation(
        command=rec["command"] or "", mask=decode_rle(rec["mask_rle"]),
        box=tuple(rec["box"]) if rec["box"] is not None else None, score=rec["score"],
        object_score=rec.get("object_score", 0.0), reasoning=rec.get("reasoning", ""),
        answer=rec.get("answer", ""), status=Status[rec["status"]], error=rec["error"],
        truncated=rec.get("truncated", False),
        timings=Timings(generate_ms=rec.get("generate_ms", 0.0), mask_ms=rec.get("mask_ms", 0.0),
                        total_ms=rec.get("total_ms", 0.0)))


def write_csv(records: list[dict], path: str | Path) -> None:
    """One row per frame with :data:`CSV_COLUMNS` (box cells empty without a box)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in records:
            box = r["box"] or ["", "", "", ""]
            w.writerow([r["frame"], r["t_ns"], r["stamp_ns"], r["command"] or "", r["status"],
                        r["error"], *(f"{v:.1f}" if v != "" else "" for v in box),
                        f"{r['score']:.3f}", f"{r['model_ms']:.1f}", f"{r['conv_ms']:.2f}",
                        r.get("answer", "")])


def _thumb(rgb: np.ndarray, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def write_strip(overlays: list[np.ndarray], path: str | Path, height: int = THUMB_HEIGHT) -> None:
    """Side-by-side PNG of HxWx3 uint8 RGB overlays, each scaled to ``height`` pixels."""
    gap = np.full((height, 4, 3), 255, np.uint8)
    parts = []
    for img in overlays:
        parts += [_thumb(img, height), gap]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(parts[:-1], axis=1), cv2.COLOR_RGB2BGR))


class VideoSink:
    """MP4 (``mp4v``) of overlays at ``fps``; frames are resized to the first one's size.

    If OpenCV has no working MP4 encoder, the sink logs that once and writes nothing.
    """

    def __init__(self, path: str | Path, fps: float = 10.0):
        self.path, self.fps, self._writer, self._size, self.frames = Path(path), fps, None, None, 0
        self._failed = False

    def add(self, rgb: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame."""
        if self._failed:
            return
        if self._writer is None:
            self._size = (rgb.shape[1], rgb.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.fps, self._size)
            if not self._writer.isOpened():
                log.warning("OpenCV cannot write %s (no mp4v encoder); use the PNG strip",
                            self.path)
                self._failed = True
                return
        if (rgb.shape[1], rgb.shape[0]) != self._size:
            rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> bool:
        """Finish the file; True when a video with at least one frame was written."""
        if self._writer is not None:
            self._writer.release()
        return not self._failed and self.frames > 0
