"""Evaluation reports: split metrics from records, JSON + Markdown in the paper's layout, overlays.

The paper's Table 1 reports cIoU (x100) on eight splits; :data:`PAPER_LENS_3B` holds LENS-3B's
numbers and the Markdown puts ours beside them. Every figure here is computed from the
per-sentence records written by :class:`~lens_ros.evaluation.evaluator.Evaluator`.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from lens_ros.core import LensError, Status
from lens_ros.data.sources import read_rgb
from lens_ros.data.masks import decode_rle
from lens_ros.evaluation.metrics import BOX_ACC_THRESHOLD, PRECISION_THRESHOLDS, summarize
from lens_ros.evaluation.refcoco import PAPER_SPLITS
from lens_ros.visualize import overlay

#: LENS-3B cIoU x100 from the paper (Table 1; the hustvl/LENS README's ``assets/res1.png``)
PAPER_LENS_3B = {"refcoco.unc.val": 84.2, "refcoco.unc.testA": 85.3, "refcoco.unc.testB": 81.0,
                 "refcoco+.unc.val": 79.4, "refcoco+.unc.testA": 82.8, "refcoco+.unc.testB": 74.3,
                 "refcocog.umd.val": 81.2, "refcocog.umd.test": 81.0}
PAPER_LENS_3B_AVG = 81.2
GT_BOX_COLOR = (0, 200, 0)  #: RGB of the ground-truth box in overlays
_COLUMNS = ("RefCOCO val", "testA", "testB", "RefCOCO+ val", "testA", "testB",
            "RefCOCOg val", "test")


def split_metrics(records: list[dict]) -> dict:
    """Metrics of one split (or one level) from its sentence records (fractions in [0, 1]).

    Adds to :func:`~lens_ros.evaluation.metrics.summarize`: ``refs`` (distinct ref ids),
    ``statuses`` (count per status name) and ``truncated`` (sentences that hit max_new_tokens).
    """
    out = summarize([r["intersection"] for r in records], [r["union"] for r in records],
                    [r["box_iou"] for r in records])
    out["refs"] = len({r["ref_id"] for r in records})
    out["statuses"] = dict(Counter(r["status"] for r in records))
    out["truncated"] = sum(bool(r.get("truncated")) for r in records)
    return out


def build_report(records_by_split: dict[str, list[dict]], model: str) -> dict:
    """The JSON report: metrics per split, per level (when records carry one) and the paper's."""
    report = {"model": model, "splits": {}, "levels": {},
              "paper": {"model": "LENS-3B", "ciou_x100": PAPER_LENS_3B,
                        "avg_x100": PAPER_LENS_3B_AVG}}
    for split, recs in records_by_split.items():
        report["splits"][split] = split_metrics(recs)
        by_level = defaultdict(list)
        for r in recs:
            if r.get("level") is not None:
                by_level[str(r["level"])].append(r)
        if by_level:
            report["levels"][split] = {lv: split_metrics(rs)
                                       for lv, rs in sorted(by_level.items())}
    ours = [report["splits"][s]["ciou"] * 100 for s in PAPER_SPLITS if s in report["splits"]]
    report["paper_splits_evaluated"] = len(ours)
    report["avg_ciou_x100"] = float(np.mean(ours)) if ours else None
    return report


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def markdown(report: dict) -> str:
    """Markdown: the paper's Table 1 layout (cIoU x100) with LENS-3B beside ours, then every
    split's full metrics, then the per-level breakdown."""
    lines = ["## cIoU in the paper's layout (Table 1, x100)", "",
             "| Model | " + " | ".join(_COLUMNS) + " | Avg |",
             "|---" * (len(_COLUMNS) + 2) + "|",
             "| LENS-3B (paper) | " + " | ".join(_cell(PAPER_LENS_3B[s]) for s in PAPER_SPLITS)
             + f" | {_cell(PAPER_LENS_3B_AVG)} |"]
    ours = [report["splits"][s]["ciou"] * 100 if s in report["splits"] else None
            for s in PAPER_SPLITS]
    n = report["paper_splits_evaluated"]
    avg = _cell(report["avg_ciou_x100"]) + ("" if n in (0, len(PAPER_SPLITS)) else f" ({n}/8)")
    lines.append(f"| {report['model']} (ours) | " + " | ".join(_cell(v) for v in ours)
                 + f" | {avg} |")
    ps = [f"P@{t}" for t in PRECISION_THRESHOLDS]
    head = ["split", "sentences", "refs", "cIoU", "gIoU", *ps, f"box acc@{BOX_ACC_THRESHOLD}",
            "box IoU", "errors"]
    lines += ["", "## All metrics per split (x100)", "", "| " + " | ".join(head) + " |",
              "|---" * len(head) + "|"]
    for split, m in report["splits"].items():
        lines.append(_metrics_row(split, m))
    for split, levels in report["levels"].items():
        lines += ["", f"## {split} by level (x100)", "", "| " + " | ".join(["level"] + head[1:])
                  + " |", "|---" * len(head) + "|"]
        lines += [_metrics_row(level, m) for level, m in levels.items()]
    return "\n".join(lines) + "\n"


def _metrics_row(name: str, m: dict) -> str:
    errors = sum(c for s, c in m["statuses"].items() if not Status[s].is_success
                 and s != Status.NO_TARGET.name)
    cells = [name, str(m["n"]), str(m["refs"]), _cell(m["ciou"] * 100), _cell(m["giou"] * 100),
             *(_cell(m[f"p@{t}"] * 100) for t in PRECISION_THRESHOLDS),
             _cell(m[f"box_acc@{BOX_ACC_THRESHOLD}"] * 100), _cell(m["box_iou"] * 100),
             str(errors)]
    return "| " + " | ".join(cells) + " |"


def write_report(output_dir: str | Path, report: dict) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md``; returns both paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return out / "report.json", out / "report.md"


def record_overlay(record: dict) -> np.ndarray:
    """HxWx3 uint8 RGB overlay of one sentence record: its image with the predicted mask, answer
    box, sentence and IoU drawn by :func:`lens_ros.visualize.overlay`, the GT box in green.
    An image that cannot be read is replaced by a grey canvas of its recorded size."""
    status = "" if record["status"] == Status.OK.name else record["status"]
    try:
        rgb = read_rgb(record["image"])
    except LensError:
        rgb = np.full((record["height"], record["width"], 3), 128, np.uint8)
    img = overlay(rgb, decode_rle(record["pred_rle"]), record["box"],
                  f"{record['sentence']}  (IoU {record['iou']:.2f})", record["answer"], status)
    x1, y1, x2, y2 = (int(round(v)) for v in record["gt_box"])
    cv2.rectangle(img, (x1, y1), (x2, y2), GT_BOX_COLOR, 1)
    return img


def write_overlays(records: list[dict], directory: str | Path, count: int) -> list[Path]:
    """PNG overlays of the ``count`` worst and ``count`` best sentences by IoU (ties in ref
    order). Returns the written paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ranked = sorted(records, key=lambda r: (r["iou"], r["ref_id"], r["sent_index"]))
    picks = [("worst", i, r) for i, r in enumerate(ranked[:count])]
    best = ranked[max(count, len(ranked) - count):]  # never the same record twice
    picks += [("best", i, r) for i, r in enumerate(reversed(best))]
    written = []
    for kind, rank, rec in picks:
        img = record_overlay(rec)
        path = directory / f"{kind}{rank:02d}_ref{rec['ref_id']}_s{rec['sent_index']}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        written.append(path)
    return written
