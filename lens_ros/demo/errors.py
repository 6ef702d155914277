"""Where the demo model's misses come from, from a ``lens-eval`` run on the synthetic test split.

Every answer of the demo model names its target in the reasoning ("... it is the small red
cube"); the synthetic refs carry the reference reasoning and the target's name. So each
sentence falls into one of four cases:

* ``named right, box hit``   the reasoning resolved the command and the box is on the object;
* ``named right, box miss``  resolved, but the box is off (imprecise or on another object);
* ``named wrong, box hit``   the box lands on the target although the name is wrong;
* ``named wrong, box miss``  the command was resolved to another object.

The split tells whether resolving the command (language/reasoning) or localising the named
object (vision) limits box accuracy. A second table splits box accuracy by the target's
**visual-token cell**: the LLM sees the image as a grid x grid raster of merged visual tokens
(4 x 4 for the demo model's 112 px input, 28 px per token), and the target's box centre either
has its cell to itself (``alone``), shares it with smaller objects only (``shares, largest``),
or shares it with a larger one (``shares, smaller``: the object the demo recipe's dense
token loss does not label, and the hardest case for a 16-token image).

    python -m lens_ros.demo.errors runs/demo/eval_before_grpo [--data-root data/refer_seg]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from lens_ros.evaluation.metrics import BOX_ACC_THRESHOLD
from lens_ros.demo.samples import token_cell
from lens_ros.model.presets import DEMO_TOKEN_GRID
from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE
from lens_ros.demo.tables import load_records
from lens_ros.data.safe_pickle import safe_load

CASES = ("named right, box hit", "named right, box miss", "named wrong, box hit",
         "named wrong, box miss")
CELLS = ("alone", "shares, largest", "shares, smaller")


def named_target(reasoning: str) -> str:
    """The object a demo-model reasoning ends on: "... it is the small red cube" -> "small red
    cube" ("" when the text does not end that way)."""
    _, sep, tail = (reasoning or "").rpartition(" is the ")
    return tail.strip() if sep else ""


def classify(records: list[dict], refs: dict) -> Counter:
    """Counts per (level, case) and ("all", case); ``refs`` maps ref_id -> ref dict with
    ``reasoning`` (the reference text)."""
    out: Counter = Counter()
    for r in records:
        ref = refs.get(r["ref_id"])
        if ref is None:
            continue
        right = named_target(r.get("reasoning") or "") == named_target(ref["reasoning"])
        hit = r["box_iou"] >= BOX_ACC_THRESHOLD
        case = CASES[(0 if right else 2) + (0 if hit else 1)]
        out[("all", case)] += 1
        out[(r.get("level") or "?", case)] += 1
    return out


def table(counts: Counter) -> str:
    """Markdown: per level, the share of each case and box accuracy given a right name."""
    levels = sorted({lv for lv, _ in counts if lv != "all"})
    lines = ["| level | n | " + " | ".join(CASES) + " | box acc given the right name |",
             "|---|---|" + "---|" * (len(CASES) + 1)]
    for lv in ["all"] + levels:
        n = sum(counts[(lv, c)] for c in CASES)
        if not n:
            continue
        named = counts[(lv, CASES[0])] + counts[(lv, CASES[1])]
        given = f"{counts[(lv, CASES[0])] / named:.2f}" if named else "–"
        lines.append(f"| {'overall' if lv == 'all' else lv} | {n} | "
                     + " | ".join(f"{counts[(lv, c)] / n:.2f}" for c in CASES) + f" | {given} |")
    return "\n".join(lines) + "\n"


def token_cells(instances: dict, grid: int = DEMO_TOKEN_GRID) -> dict[int, str]:
    """ann_id -> one of :data:`CELLS`: how the object's box centre shares its cell of the
    ``grid`` x ``grid`` raster over its image (``instances``: COCO dict, bbox = x, y, w, h in
    pixels) with the image's other objects; the larger box area wins a shared cell."""
    size = {im["id"]: (im["width"], im["height"]) for im in instances["images"]}
    by_cell: dict[tuple, list] = {}
    for a in instances["annotations"]:
        x, y, w, h = a["bbox"]
        cell = token_cell((x, y, x + w, y + h), grid, *size[a["image_id"]])
        by_cell.setdefault((a["image_id"], cell), []).append((w * h, a["id"]))
    out = {}
    for anns in by_cell.values():
        largest = max(area for area, _ in anns)
        for area, ann_id in anns:
            out[ann_id] = (CELLS[0] if len(anns) == 1 else
                           CELLS[1] if area == largest else CELLS[2])
    return out


def cell_table(records: list[dict], refs: dict, cells: dict[int, str]) -> str:
    """Markdown: per level, the share of targets in each :data:`CELLS` state and the box
    accuracy@0.5 within each state (``n``, ``acc``)."""
    groups: dict[tuple, list] = {}
    for r in records:
        ref = refs.get(r["ref_id"])
        if ref is None or ref.get("ann_id") not in cells:
            continue
        hit = float(r["box_iou"] >= BOX_ACC_THRESHOLD)
        for lv in ("all", r.get("level") or "?"):
            groups.setdefault((lv, cells[ref["ann_id"]]), []).append(hit)
    levels = sorted({lv for lv, _ in groups if lv != "all"})
    lines = ["| level | " + " | ".join(f"{c}: n, box acc" for c in CELLS) + " |",
             "|---|" + "---|" * len(CELLS)]
    for lv in ["all"] + levels:
        row = [f"{len(h)}, {sum(h) / len(h):.2f}" if (h := groups.get((lv, c))) else "0, –"
               for c in CELLS]
        lines.append(f"| {'overall' if lv == 'all' else lv} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lens_ros.demo.errors",
                                description=__doc__.split("\n")[0])
    p.add_argument("eval_dir", help="lens-eval output folder (with records/)")
    p.add_argument("--data-root", default="data/refer_seg", help="refer_seg root of the split")
    p.add_argument("--dataset", default="synthetic", help="dataset folder under the root")
    p.add_argument("--grid", type=int, default=DEMO_TOKEN_GRID,
                   help=f"merged visual tokens per image side ({DEMO_TOKEN_GRID} = the demo "
                        f"model's {DEMO_IMAGE_SIZE} px input at patch 14)")
    args = p.parse_args(argv)
    folder = Path(args.data_root) / args.dataset
    try:
        refs = {r["ref_id"]: r for r in safe_load(folder / "refs(unc).p")}
        records = load_records(args.eval_dir)
        instances = json.loads((folder / "instances.json").read_text(encoding="utf-8"))
        cells = token_cells(instances, args.grid)
    except (OSError, ValueError, KeyError) as err:
        print(f"lens_ros.demo.errors: {err}", file=sys.stderr)
        return 2
    print(table(classify(records, refs)))
    print(f"Box accuracy by the target's visual-token cell ({args.grid} x {args.grid}):\n")
    print(cell_table(records, refs, cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
