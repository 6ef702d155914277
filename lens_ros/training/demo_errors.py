"""Where the demo model's misses come from, from a ``lens-eval`` run on the synthetic test split.

Every answer of the demo model names its target in the reasoning ("... it is the small red
cube"); the synthetic refs carry the reference reasoning and the target's name. So each
sentence falls into one of four cases:

* ``named right, box hit``   the reasoning resolved the command and the box is on the object;
* ``named right, box miss``  resolved, but the box is off (imprecise or on another object);
* ``named wrong, box hit``   the box lands on the target although the name is wrong;
* ``named wrong, box miss``  the command was resolved to another object.

The split tells whether resolving the command (language/reasoning) or localising the named
object (vision) limits box accuracy.

    python -m lens_ros.training.demo_errors runs/demo/eval_before_grpo [--data-root data/refer_seg]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from lens_ros.evaluation.metrics import BOX_ACC_THRESHOLD
from lens_ros.training.demo_tables import load_records
from lens_ros.training.safe_pickle import safe_load

CASES = ("named right, box hit", "named right, box miss", "named wrong, box hit",
         "named wrong, box miss")


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lens_ros.training.demo_errors",
                                description=__doc__.split("\n")[0])
    p.add_argument("eval_dir", help="lens-eval output folder (with records/)")
    p.add_argument("--data-root", default="data/refer_seg", help="refer_seg root of the split")
    p.add_argument("--dataset", default="synthetic", help="dataset folder under the root")
    args = p.parse_args(argv)
    try:
        refs = {r["ref_id"]: r for r in safe_load(Path(args.data_root) / args.dataset
                                                   / "refs(unc).p")}
        records = load_records(args.eval_dir)
    except (OSError, ValueError, KeyError) as err:
        print(f"demo_errors: {err}", file=sys.stderr)
        return 2
    print(table(classify(records, refs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
