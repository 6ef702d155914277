"""``lens-eval``: evaluate a checkpoint on RefCOCO-format splits (cIoU, gIoU, P@k, box accuracy).

Example::

    lens-eval --model runs/demo --data-root datasets/refer_seg --splits paper -o eval_out
    lens-eval --model runs/demo --data-root synthetic_export --splits synthetic/test -o eval_syn

Writes ``OUT/records/<split>.jsonl`` (one line per sentence, resumable), ``OUT/report.json``,
``OUT/report.md`` (the paper's table beside ours) and ``OUT/overlays/<split>/`` (worst and best
cases). Re-running the same command skips every sentence already recorded.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path


from lens_ros.configuration import build_config, read_yaml_mappings
from lens_ros.core import LensError
from lens_ros.interrupts import run_batch
from lens_ros.evaluation.evaluator import Evaluator
from lens_ros.evaluation.fingerprint import model_fingerprint
from lens_ros.evaluation.refcoco import PAPER_SPLITS, load_split, parse_split
from lens_ros.evaluation.reports import build_report, write_overlays, write_report

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """Settings of one ``lens-eval`` run (YAML keys for ``--config`` have the same names)."""

    model: str = ""  #: checkpoint directory (save_pretrained layout)
    data_root: str = ""  #: folder holding refcoco/, refcoco+/, refcocog/ (or a synthetic export)
    #: split names (e.g. refcocog.umd.val, synthetic/test), or "paper" for the paper's eight
    splits: list[str] = field(default_factory=lambda: ["paper"])
    image_dir: str | None = None  #: image folder; None = ROOT/images/mscoco/images/train2014 etc.
    output: str = "lens_eval_out"  #: output directory (records, report, overlays)
    max_refs: int | None = None  #: evaluate only the first N refs of each split (quick checks)
    overlays: int = 4  #: PNG overlays of the N worst and N best sentences per split (0 = none)
    reasoning: bool | None = None  #: think before answering; None = the checkpoint's default
    max_new_tokens: int | None = None  #: generation budget override; None = checkpoint default
    device: str | None = None  #: torch device; None = cuda when available, else cpu
    dtype: str | None = None  #: torch dtype name; None = bf16 on CUDA, fp32 on CPU
    progress: bool = True  #: tqdm progress bars

    def split_names(self) -> list[str]:
        """The splits with ``paper`` expanded to the paper's eight."""
        names = []
        for s in self.splits:
            names.extend(PAPER_SPLITS if s == "paper" else [str(parse_split(s))])
        return list(dict.fromkeys(names))


def make_parser() -> argparse.ArgumentParser:
    """The ``lens-eval`` argument parser."""
    p = argparse.ArgumentParser(prog="lens-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path,
                   help="YAML file with EvalConfig fields; flags override it")
    p.add_argument("--model", help="checkpoint directory (config.json + safetensors + tokenizer)")
    p.add_argument("--data-root", help="folder with refcoco/, refcoco+/, refcocog/ "
                   "(the reference's refer_seg) or a RefCOCO-format synthetic export")
    p.add_argument("--splits", nargs="+", help="split names such as refcoco.unc.val, "
                   "refcoco/testA, synthetic/test, or 'paper' for the paper's eight (default)")
    p.add_argument("--image-dir", help="folder holding the images by file_name (default: "
                   "ROOT/images/mscoco/images/train2014, ROOT/DATASET/images, ROOT/images)")
    p.add_argument("-o", "--output", help="output directory (default lens_eval_out)")
    p.add_argument("--max-refs", type=int, help="evaluate only the first N refs of each split")
    p.add_argument("--overlays", type=int, help="overlay PNGs of the N worst and N best sentences "
                   "per split (default 4; 0 = none)")
    p.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=None,
                   help="force reasoning on/off (default: the checkpoint's setting)")
    p.add_argument("--max-new-tokens", type=int, help="generation budget (default: checkpoint's)")
    p.add_argument("--device",
                   help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    p.add_argument("--dtype", help="torch dtype, e.g. bfloat16 or float32 (default: per device)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """EvalConfig from ``--config`` YAML (if any) overridden by the flags that were given."""
    values = read_yaml_mappings([args.config]) if args.config else {}
    for f in dataclasses.fields(EvalConfig):
        flag = getattr(args, f.name, None)
        if flag is not None:
            values[f.name] = flag
    if args.no_progress:
        values["progress"] = False
    cfg = build_config(EvalConfig, values, source=str(args.config or "flags"))
    if not cfg.model or not cfg.data_root:
        raise ValueError("--model and --data-root are required (or set them in --config)")
    return cfg


def load_segmenter(model: str, device: str | None = None, dtype: str | None = None,
                   **overrides):
    """``LensSegmenter.from_pretrained`` from CLI strings (dtype by torch name, e.g. bfloat16);
    ``overrides`` set InferenceConfig fields such as ``max_new_tokens`` (None values dropped)."""
    import torch

    from lens_ros.model import LensSegmenter

    torch_dtype = None
    if dtype is not None:
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype; use e.g. float32 or bfloat16")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return LensSegmenter.from_pretrained(model, device=device, dtype=torch_dtype, **overrides)


def eval_fingerprint(cfg: EvalConfig, segmenter) -> dict:
    """The model fingerprint of this run: checkpoint, weights hash and every setting that
    changes predictions (the segmenter's inference config, reasoning, device dtype)."""
    import dataclasses as dc

    model = getattr(segmenter, "model", None)
    settings = {"inference": dc.asdict(segmenter.config), "reasoning": cfg.reasoning,
                "dtype": str(getattr(model, "dtype", cfg.dtype))}
    return model_fingerprint(cfg.model, settings)


def run(cfg: EvalConfig, segmenter) -> dict:
    """Evaluate every split of ``cfg`` with ``segmenter``; writes records, report and overlays."""
    out = Path(cfg.output)
    evaluator = Evaluator(segmenter, reasoning=cfg.reasoning, progress=cfg.progress,
                          fingerprint=eval_fingerprint(cfg, segmenter))
    records = {}
    for name in cfg.split_names():
        split = parse_split(name)
        samples = load_split(cfg.data_root, split, cfg.image_dir)
        if cfg.max_refs is not None:
            samples = samples[:cfg.max_refs]
        records[name] = evaluator.evaluate(name, samples, out / "records" / f"{split.slug}.jsonl")
        if cfg.overlays > 0:
            write_overlays(records[name], out / "overlays" / split.slug, cfg.overlays)
    report = build_report(records, Path(cfg.model).name or cfg.model)
    report["model_calls"] = evaluator.model_calls
    write_report(out, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lens-eval``; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = make_parser().parse_args(argv)
    return run_batch("lens-eval", lambda: _evaluate(args), "finished references are in "
                     "OUT/records; re-run the same command to resume")


def _evaluate(args) -> int:
    try:
        cfg = config_from_args(args)
        report = run(cfg, load_segmenter(cfg.model, cfg.device, cfg.dtype,
                                          max_new_tokens=cfg.max_new_tokens))
    except (ValueError, FileNotFoundError, LensError) as err:
        print(f"lens-eval: error: {err}", file=sys.stderr)
        return 2
    out = Path(cfg.output)
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"records: {out / 'records'}  report: {out / 'report.json'}, {out / 'report.md'}  "
          f"overlays: {out / 'overlays'}  (computed {report['model_calls']} refs this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
