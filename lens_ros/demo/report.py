"""Scoring and writing of the demo folder: recorded LensResult messages against a synthetic
bag's ``ground_truth.jsonl`` (matched by the source frame's header stamp and the command)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from lens_ros.bag.io import InputBag
from lens_ros.data.masks import decode_rle
from lens_ros.evaluation.metrics import box_iou, intersection_union, sentence_iou
from lens_ros.conversions.image import image_to_rgb
from lens_ros.conversions.result import result_to_segmentation
from lens_ros.visualize import overlay

IMAGE_TOPIC, RESULT_TOPIC = "/camera/image", "/result"


def load_ground_truth(bag: Path) -> list[dict]:
    """Lines of ``bag/ground_truth.jsonl``; ValueError when missing or empty."""
    path = Path(bag) / "ground_truth.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} not found; the demo needs a synthetic bag written by "
                         "`python -m lens_ros.synthetic bag`")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} is empty")
    return rows


def command_groups(gt: list[dict]) -> list[list[dict]]:
    """Ground-truth lines grouped by published command (one line per frame showing its scene),
    in publication order."""
    groups: dict[tuple, list[dict]] = {}
    for g in gt:
        groups.setdefault((g["command_stamp_ns"], g["command"]), []).append(g)
    return [groups[k] for k in sorted(groups)]


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


def read_frames(bag: Path) -> dict[int, np.ndarray]:
    """{header stamp ns: HxWx3 uint8 RGB} of the bag's camera frames."""
    frames = {}
    with InputBag(bag) as b:
        for conn, _, raw in b.messages([IMAGE_TOPIC]):
            msg = b.deserialize(raw, conn)
            frames[_stamp_ns(msg.header)] = image_to_rgb(msg)
    return frames


def read_results(results_bag: Path) -> list[tuple[int, object]]:
    """[(source stamp ns, Segmentation)] of every recorded LensResult (none if no bag)."""
    if not Path(results_bag).exists():
        return []
    out = []
    with InputBag(results_bag) as b:
        for conn, _, raw in b.messages([RESULT_TOPIC]):
            msg = b.deserialize(raw, conn)
            out.append((_stamp_ns(msg.header), result_to_segmentation(msg)))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]


def write_report(bag: Path, results_bag: Path, gt: list[dict], out: Path,
                 wall_s: float) -> dict:
    """Overlays, grid, results.jsonl, summary.json/txt in ``out``; returns the summary dict."""
    frames = read_frames(bag)
    results = {(s, seg.command): seg for s, seg in read_results(results_bag)}
    odir = out / "overlays"
    odir.mkdir(parents=True, exist_ok=True)
    for old in odir.glob("*.png"):
        old.unlink()
    rows, thumbs = [], []
    inter = union = 0.0
    for i, group in enumerate(command_groups(gt)):
        # the command is answered on one of the frames its scene is shown on
        hits = [g for g in group if (g["stamp_ns"], g["command"]) in results]
        g = hits[0] if hits else group[0]
        seg = results.get((g["stamp_ns"], g["command"]))
        gt_mask = decode_rle(g["gt_mask"])
        row = {"command": g["command"], "level": g["level"], "target": g["target"],
               "gt_box": g["gt_box"], "answered": seg is not None}
        if seg is not None:
            mask = seg.mask if seg.mask.shape == gt_mask.shape else np.zeros_like(gt_mask)
            i_, u_ = intersection_union(mask, gt_mask.astype(bool).astype(np.uint8))
            inter, union = inter + i_, union + u_
            biou = box_iou(list(seg.box), g["gt_box"]) if seg.box is not None else 0.0
            row.update({"status": seg.status.name, "reasoning": seg.reasoning,
                        "answer": seg.answer, "box": None if seg.box is None else
                        [round(float(v), 1) for v in seg.box], "mask_iou": sentence_iou(i_, u_),
                        "box_iou": biou, "model_ms": round(seg.timings.total_ms, 1)})
            rgb = frames.get(g["stamp_ns"])
            if rgb is not None:
                img = overlay(rgb, mask, seg.box, g["command"], seg.reasoning,
                              "" if seg.status.name == "OK" else seg.status.name)
                name = f"{i:02d}_{_slug(g['command'])}.png"
                Image.fromarray(img).save(odir / name)
                row["overlay"] = f"overlays/{name}"
                thumbs.append(img)
        rows.append(row)
    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    done = [r for r in rows if r["answered"]]
    lat = [r["model_ms"] for r in done]
    summary = {
        "commands": len(rows), "answered": len(done),
        "ok": sum(r.get("status") == "OK" for r in done),
        "mean_mask_iou": float(np.mean([r["mask_iou"] for r in done])) if done else 0.0,
        "ciou": inter / union if union else 0.0,
        "box_acc_0.5": float(np.mean([r["box_iou"] >= 0.5 for r in done])) if done else 0.0,
        "latency_ms_mean": float(np.mean(lat)) if lat else 0.0,
        "latency_ms_median": float(np.median(lat)) if lat else 0.0,
        "replay_wall_s": round(wall_s, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if thumbs:
        _grid(thumbs, out / "grid.png")
    lines = [f"commands answered : {summary['answered']}/{summary['commands']} "
             f"(status OK: {summary['ok']})",
             f"mean mask IoU     : {summary['mean_mask_iou']:.3f}   cIoU {summary['ciou']:.3f}",
             f"box accuracy@0.5  : {summary['box_acc_0.5']:.3f}",
             f"model latency     : mean {summary['latency_ms_mean']:.0f} ms, median "
             f"{summary['latency_ms_median']:.0f} ms per command (node's total_ms, CPU)",
             f"replay wall time  : {summary['replay_wall_s']} s", ""]
    for r in rows:
        lines.append(f"- {r['command']!r}: " + (f"{r.get('status')}, mask IoU "
                     f"{r['mask_iou']:.2f}, reasoning: {r['reasoning']!r}" if r["answered"]
                     else "NO RESULT"))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    return summary


def _grid(images: list[np.ndarray], path: Path, cols: int = 4, side: int = 224) -> None:
    tiles = [np.asarray(Image.fromarray(im).resize((side, side))) for im in images]
    rows = (len(tiles) + cols - 1) // cols
    canvas = np.full((rows * side, cols * side, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        canvas[r * side:(r + 1) * side, c * side:(c + 1) * side] = t
    Image.fromarray(canvas).save(path)
