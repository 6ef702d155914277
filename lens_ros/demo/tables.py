"""Before/after-GRPO table of the demo recipe from two ``lens-eval`` output folders, plus the
answer-format validity (lens-eval's per-sentence records hold each raw answer) and the paired
GRPO effect with bootstrap intervals (is the gain larger than the noise?).

    python -m lens_ros.demo.tables runs/demo/eval_before_grpo runs/demo/eval_after_grpo \
        [--out runs/demo/table.md] [--pick-best MODEL_BEFORE MODEL_AFTER]

``--pick-best`` prints the checkpoint whose overall cIoU is higher (the one to ship).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lens_ros.evaluation.metrics import BOX_ACC_THRESHOLD, paired_bootstrap
from lens_ros.demo.evaluate import VALID

SPLIT = "synthetic/test"
LEVELS = ("attribute", "spatial", "ordinal", "indirect")


def load_eval(directory: str | Path) -> dict:
    """{"all": metrics, level: metrics} from report.json, each with ``format_valid`` added."""
    d = Path(directory)
    rep = json.loads((d / "report.json").read_text())
    out = {"all": dict(rep["splits"][SPLIT])}
    out.update({lv: dict(m) for lv, m in rep.get("levels", {}).get(SPLIT, {}).items()})
    valid: dict[str, list[float]] = {}
    for r in load_records(d):
        ok = float(bool(VALID.fullmatch((r.get("answer") or "").strip())))
        valid.setdefault("all", []).append(ok)
        valid.setdefault(r.get("level", "?"), []).append(ok)
    for key, vals in valid.items():
        if key in out:
            out[key]["format_valid"] = sum(vals) / len(vals)
    return out


def load_records(directory: str | Path) -> list[dict]:
    """lens-eval's per-sentence records of a run folder (all record files)."""
    out = []
    for f in sorted((Path(directory) / "records").glob("*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def effect_table(before: list[dict], after: list[dict], resamples: int = 2000) -> str:
    """Markdown: the paired after - before difference (x100) of cIoU and box acc@0.5 per level,
    with its 95 % bootstrap interval (:func:`~lens_ros.evaluation.metrics.paired_bootstrap`);
    "yes" in the last column when both intervals lie above 0."""
    lines = ["| level | n | Δ cIoU [95 % CI] | Δ box acc@0.5 [95 % CI] | measurable gain |",
             "|---|---|---|---|---|"]
    for level in ("all",) + LEVELS:
        b = [r for r in before if level == "all" or r.get("level") == level]
        a = [r for r in after if level == "all" or r.get("level") == level]
        if not b or not a:
            continue
        cells, gains = [], []
        for metric in ("ciou", f"box_acc@{BOX_ACC_THRESHOLD}"):
            d = paired_bootstrap(b, a, metric, resamples)
            cells.append(f"{100 * d['delta']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]")
            gains.append(d["low"] > 0)
        name = "overall" if level == "all" else level
        lines.append(f"| {name} | {d['n']} | {cells[0]} | {cells[1]} "
                     f"| {'yes' if all(gains) else 'no'} |")
    return "\n".join(lines) + "\n"


def table(before: dict, after: dict) -> str:
    """Markdown: one row per level (and overall), before -> after for each metric (x100)."""
    cols = [("ciou", "cIoU"), ("giou", "gIoU"), ("box_acc@0.5", "box acc@0.5"),
            ("p@0.5", "P@0.5"), ("format_valid", "format valid")]
    head = "| level | n | " + " | ".join(f"{t} before → after" for _, t in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for key in ("all",) + LEVELS:
        if key not in before or key not in after:
            continue
        b, a = before[key], after[key]
        cells = []
        for k, _ in cols:
            if k in b and k in a:
                cells.append(f"{100 * b[k]:.1f} → **{100 * a[k]:.1f}**"
                             if a[k] > b[k] else f"{100 * b[k]:.1f} → {100 * a[k]:.1f}")
            else:
                cells.append("–")
        lines.append(f"| {'overall' if key == 'all' else key} | {b['n']} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines) + "\n"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lens_ros.demo.tables",
                                description=__doc__.split("\n")[0])
    p.add_argument("before", help="lens-eval output folder of the model before GRPO")
    p.add_argument("after", help="lens-eval output folder of the model after GRPO")
    p.add_argument("--out", default=None, help="also write the table to this file")
    p.add_argument("--pick-best", nargs=2, metavar=("MODEL_BEFORE", "MODEL_AFTER"), default=None,
                   help="print the model with the higher overall cIoU on the last line")
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    try:
        before, after = load_eval(args.before), load_eval(args.after)
    except (OSError, KeyError, ValueError) as err:
        print(f"lens_ros.demo.tables: cannot read the lens-eval reports: {err}", file=sys.stderr)
        return 2
    text = table(before, after) + "\nGRPO effect on the same sentences (after − before):\n\n" + \
        effect_table(load_records(args.before), load_records(args.after))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.pick_best:
        print(args.pick_best[1] if after["all"]["ciou"] > before["all"]["ciou"]
              else args.pick_best[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
