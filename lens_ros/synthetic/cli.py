"""``python -m lens_ros.synthetic``: write synthetic referring datasets.

  refcoco   RefCOCO-layout dataset (refs(unc).p + instances.json + images) for lens-eval/training
  bag       rosbag2 of static scenes with commands and a ground-truth sidecar (for the node)
  sequence  rosbag2 of one moving-object sequence (tracking tests)
  preview   a PNG grid of scenes with each command's ground truth drawn on it

Scene options (image size, object counts, ...) come from ``--config file.yaml`` (the fields of
``SceneConfig``) and the flags, flags winning.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from lens_ros.configuration import build_config, read_yaml_mappings

from lens_ros.synthetic.expressions import LEVELS
from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE, SceneConfig
from lens_ros.synthetic.splits import SPLITS, make_split_scene


def _scene_args(p: argparse.ArgumentParser, size: int) -> None:
    p.add_argument("--config", type=Path, help="YAML file of SceneConfig fields "
                   "(width, height, min_objects, max_objects, shapes, ...)")
    p.add_argument("--width", type=int, help=f"image width in pixels (default {size})")
    p.add_argument("--height", type=int, help=f"image height in pixels (default {size})")
    p.add_argument("--min-objects", type=int, help="fewest objects per scene (default 2)")
    p.add_argument("--max-objects", type=int, help="most objects per scene (default 5)")
    p.add_argument("--no-depth-noise", action="store_true",
                   help="perfect depth (no noise, holes or dropouts)")


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m lens_ros.synthetic``."""
    parser = argparse.ArgumentParser(prog="python -m lens_ros.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("refcoco", help="write a RefCOCO-layout dataset")
    p.add_argument("--out", type=Path, required=True,
                   help="the refer_seg folder; the dataset goes to OUT/NAME")
    p.add_argument("--name", default="synthetic", help="dataset folder name (default synthetic)")
    for split, n in (("train", 1000), ("val", 200), ("test", len(SPLITS["test"]))):
        p.add_argument(f"--{split}", type=int, default=n,
                       help=f"scenes of the {split} split (default {n}, max {len(SPLITS[split])})")
    p.add_argument("--expressions", type=int, default=1, help="commands (refs) per scene")
    _scene_args(p, DEMO_IMAGE_SIZE)

    p = sub.add_parser("bag", help="write a rosbag2 of static scenes with commands")
    p.add_argument("--out", type=Path, required=True, help="bag folder to create (must not exist)")
    p.add_argument("--split", default="test", choices=sorted(SPLITS),
                   help="seed range to draw from")
    p.add_argument("--start", type=int, default=0, help="first scene index of the split")
    p.add_argument("--scenes", type=int, default=8, help="number of scenes")
    p.add_argument("--expressions", type=int, default=1, help="commands per scene")
    p.add_argument("--frames-per-scene", type=int, default=4, help="frames each scene is shown")
    p.add_argument("--period", type=float, default=0.5, help="seconds between frames")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="bag storage")
    _scene_args(p, 224)

    p = sub.add_parser("sequence", help="write a rosbag2 of one moving-object sequence")
    p.add_argument("--out", type=Path, required=True, help="bag folder to create (must not exist)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sequence")
    p.add_argument("--frames", type=int, default=60, help="number of frames")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second")
    p.add_argument("--moving-distractors", type=int, default=1, help="other objects that move")
    p.add_argument("--level", default="attribute", choices=["attribute", "indirect"],
                   help="kind of command (position-free)")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="bag storage")
    _scene_args(p, 224)

    p = sub.add_parser("preview", help="write a PNG grid of scenes with their ground truth")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--split", default="test", choices=sorted(SPLITS), help="seed range")
    p.add_argument("--scenes", type=int, default=8, help="number of scenes (one per level cycle)")
    p.add_argument("--columns", type=int, default=4, help="tiles per row")
    _scene_args(p, 224)
    return parser


def scene_config(args: argparse.Namespace, size: int) -> SceneConfig:
    """SceneConfig from ``--config`` YAML, then the flags; raises ValueError on unknown keys."""
    values: dict = {"width": size, "height": size}
    if args.config is not None:
        values.update(read_yaml_mappings([args.config]))
    for flag in ("width", "height", "min_objects", "max_objects"):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if args.no_depth_noise:
        values["depth_noise"] = False
    return build_config(SceneConfig, values, source=str(args.config or "flags"))


def _progress(done: int, total: int) -> None:
    if done == total or done % 500 == 0:
        print(f"{done}/{total} scenes", flush=True)


def _preview(args, config) -> Path:
    import cv2

    from lens_ros.visualize import overlay

    tiles = []
    for i in range(args.scenes):
        scene = make_split_scene(args.split, i, config)
        e = scene.expressions[0]
        tiles.append(overlay(scene.rgb, e.mask, e.box, command=f"[{e.level}] {e.text}",
                             answer=e.reasoning))
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    cols = max(1, args.columns)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    grid = np.concatenate([np.concatenate(tiles[r:r + cols], 1)
                           for r in range(0, len(tiles), cols)], 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return args.out


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns 0 on success, 2 on bad arguments or an existing output."""
    args = make_parser().parse_args(argv)
    try:
        config = scene_config(args, DEMO_IMAGE_SIZE if args.command == "refcoco" else 224)
        if args.command == "refcoco":
            from lens_ros.synthetic.refcoco import export_refcoco

            sizes = {"train": args.train, "val": args.val, "test": args.test}
            out = export_refcoco(args.out, args.name, sizes, config, args.expressions, _progress)
            print(f"wrote {out} (evaluate: lens-eval --data-root {args.out} "
                  f"--splits {args.name}/test)")
        elif args.command == "bag":
            from lens_ros.synthetic.bag import write_scene_bag

            scenes = [make_split_scene(args.split, i, config, LEVELS, args.expressions)
                      for i in range(args.start, args.start + args.scenes)]
            out = write_scene_bag(args.out, scenes, args.frames_per_scene, args.period,
                                  storage=args.storage)
            print(f"wrote {out} ({len(scenes)} scenes x {args.frames_per_scene} frames)")
        elif args.command == "sequence":
            from lens_ros.synthetic.bag import write_sequence_bag
            from lens_ros.synthetic.sequence import make_sequence

            seq = make_sequence(np.random.default_rng(args.seed), args.frames, config,
                                args.level, args.moving_distractors, args.fps)
            out = write_sequence_bag(args.out, seq, storage=args.storage)
            print(f"wrote {out} ({args.frames} frames, command {seq.command!r})")
        else:
            print(f"wrote {_preview(args, config)}")
    except (ValueError, FileExistsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
