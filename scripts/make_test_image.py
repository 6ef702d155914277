"""Write test/data/tabletop.png: a 320x240 RGB tabletop with a few coloured shapes (run once).

Deterministic (no randomness): a wooden-table gradient, a red mug, a blue box, a green bottle,
a yellow ball and a grey laptop. ``python scripts/make_test_image.py [output.png]``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "test" / "data" / "tabletop.png"


def make_image(width: int = 320, height: int = 240) -> Image.Image:
    """The tabletop scene as a PIL RGB image."""
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    wall = np.array([205, 210, 220]) * (1 - 0.2 * y)
    table = np.array([150, 105, 60]) * (0.85 + 0.15 * y)
    rows = np.where(np.arange(height)[:, None, None] < height * 0.35, wall, table)
    img = Image.fromarray(np.broadcast_to(rows, (height, width, 3)).astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.rectangle([170, 70, 290, 140], fill=(90, 90, 95), outline=(40, 40, 40))    # laptop screen
    d.polygon([(160, 140), (300, 140), (310, 160), (150, 160)], fill=(120, 120, 125))  # base
    d.rectangle([40, 110, 80, 165], fill=(200, 30, 30))                           # red mug
    d.arc([70, 120, 95, 150], start=-90, end=90, fill=(200, 30, 30), width=5)     # handle
    d.rectangle([100, 150, 150, 195], fill=(40, 70, 190))                         # blue box
    d.rectangle([20, 60, 40, 120], fill=(40, 150, 60))                            # green bottle
    d.rectangle([25, 45, 35, 60], fill=(30, 110, 45))                             # bottle neck
    d.ellipse([230, 175, 270, 215], fill=(235, 200, 30))                          # yellow ball
    return img


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(OUT), help="PNG file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    out = Path(make_parser().parse_args(argv).output)
    out.parent.mkdir(parents=True, exist_ok=True)
    make_image().save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
