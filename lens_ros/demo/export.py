"""Export a demo-recipe checkpoint for shipping: fp16 safetensors + tokenizer/processor files.

    python -m lens_ros.demo.export runs/demo/mask/best models/lens-demo [--eval EVAL.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def export(src: str | Path, dst: str | Path, notes: dict | None = None) -> Path:
    """Load ``src`` (fp32), write ``dst`` with fp16 weights; ``notes`` go to ``training.json``.
    Files already in ``dst`` that the export does not write are kept."""
    import torch

    from lens_ros.model.build import load_checkpoint
    from lens_ros.demo.stage_loop import save

    ck = load_checkpoint(src, torch.device("cpu"), torch.float32)
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save(ck.model, ck.processor, ck.inference, tmp, fp16=True)
    if notes:
        (tmp / "training.json").write_text(json.dumps(notes, indent=2) + "\n")
    if dst.exists():
        # keep files other stages put there (e.g. the tracking head: tracker.safetensors +
        # tracker_config.json, which records the SAM image encoder it was trained with)
        for extra in dst.iterdir():
            if extra.is_file() and not (tmp / extra.name).exists():
                shutil.copy2(extra, tmp / extra.name)
        shutil.rmtree(dst)
    tmp.rename(dst)
    return dst


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lens_ros.demo.export",
                                description=__doc__.split("\n")[0])
    p.add_argument("src", help="checkpoint directory (fp32, from python -m lens_ros.demo.train sft|mask or lens-train grpo)")
    p.add_argument("dst", help="output directory (replaced)")
    p.add_argument("--notes", default=None, help="JSON file copied into dst/training.json")
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    notes = json.loads(Path(args.notes).read_text()) if args.notes else None
    out = export(args.src, args.dst, notes)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors")) / 1e6
    print(f"wrote {out} ({size:.1f} MB safetensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
