"""``lens-demo``: one image, one command -> the reasoning on stdout and one overlay PNG.

    lens-demo --image test/data/tabletop.png --command "the red cube"
    lens-demo --image scene.png --command "something you could drink from" --out drink.png

Uses the shipped demo model (``models/lens-demo``) through :class:`LensSegmenter` and draws with
:func:`lens_ros.visualize.overlay`. The demo model knows only the synthetic scenes' closed
vocabulary (docs/synthetic.md); other words become unknown tokens.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: the model shipped in the repository (relative to the repository root)
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "lens-demo"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lens-demo", description=__doc__.split("\n")[0])
    p.add_argument("--image", required=True, help="input image (PNG/JPEG, any size)")
    p.add_argument("--command", required=True, help='what to segment, e.g. "the red cube"')
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help=f"LENS checkpoint directory (default {DEFAULT_MODEL})")
    p.add_argument("--out", default=None,
                   help="overlay PNG to write (default outputs/lens-demo/<image stem>.png)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from PIL import Image

    from lens_ros.core import LensError
    from lens_ros.data.items import BadRecordError
    from lens_ros.data.sources import read_rgb
    from lens_ros.model import LensSegmenter
    from lens_ros.visualize import overlay

    try:
        rgb = read_rgb(args.image)
    except BadRecordError as err:
        print(f"lens-demo: cannot read image {args.image!r}: {err}", file=sys.stderr)
        return 2
    try:
        seg = LensSegmenter.from_pretrained(args.model, device=args.device)
        seg.set_image(rgb)
        result = seg.segment(args.command, stream=None)
    except LensError as err:
        print(f"lens-demo: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("outputs/lens-demo") / f"{Path(args.image).stem}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    status = result.status.name if result.status.name != "OK" else ""
    Image.fromarray(overlay(rgb, result.mask, result.box, args.command, result.reasoning,
                            status)).save(out)
    box = ("none" if result.box is None else
           "[" + ", ".join(f"{v:.0f}" for v in result.box) + "]")
    print(f"command:   {args.command}")
    print(f"reasoning: {result.reasoning or '(none)'}")
    print(f"answer:    {result.answer}")
    print(f"box:       {box} (pixels of the input image)   mask: {int(result.mask.sum())} px   "
          f"score: {result.score:.2f}   status: {result.status.name}")
    print(f"time:      {result.timings.total_ms:.0f} ms")
    print(f"overlay:   {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
