"""Frames per second of ``lens-bag run`` with the ``tiny`` model, and the share of the run spent
outside the model (bag I/O, image conversion, overlays, result messages; target < 10 %).

For each frame size: writes an rgb8 bag (seeded), warms the model up, times the model alone on
the same decoded frames (the baseline), then times the whole runner on the bag; both are
repeated and the fastest repeat is printed (the machine is shared: the fastest is the least
disturbed). Usage: python bench/bench_bag.py [--frames 60] [--sizes 160x120 640x480]
[--storage mcap] [--repeats 2]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from lens_ros.bag.io import OutputBag, message_types
from lens_ros.bag.runner import BagRunner, RunConfig
from lens_ros.model import LensSegmenter
from lens_ros.model.presets import save_preset_checkpoint
from lens_ros.conversions.image import make_header, numpy_to_image

COMMAND = "the red box on the left"
TARGET_SHARE = 0.10


def write_bag(path: Path, frames: list[np.ndarray], storage: str) -> None:
    types = message_types()
    with OutputBag(path, storage) as bag:
        bag.add_topic("/camera/image", "sensor_msgs/msg/Image")
        for i, rgb in enumerate(frames):
            t = 1_000_000 + i * 33_000_000
            bag.write("/camera/image", t, numpy_to_image(rgb, "rgb8", make_header(types, t, "cam"),
                                                         types))


def frames_of(w: int, h: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for i in range(n):
        rgb = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
        x = (i * 3) % (w // 2)
        rgb[h // 4:3 * h // 4, x:x + w // 4] = (220, 40, 40)
        out.append(rgb)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=60, help="frames per bag")
    p.add_argument("--sizes", nargs="+", default=["160x120", "640x480"], help="WxH frame sizes")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage")
    p.add_argument("--max-new-tokens", type=int, default=8, help="generation budget")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats; the fastest is shown")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_bag_") as tmp:
        run_bench(args, Path(tmp))


def run_bench(args: argparse.Namespace, work: Path) -> None:
    """Write the bags into ``work`` and print the figures of every size."""
    rng = np.random.default_rng(0)
    ckpt = save_preset_checkpoint("tiny", work / "tiny", seed=0)
    seg = LensSegmenter.from_pretrained(ckpt, max_new_tokens=args.max_new_tokens)
    print(f"tiny model, max_new_tokens={args.max_new_tokens}, {args.frames} frames per bag, "
          f"{args.storage}; 2-core shared machine: figures are noisy")
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        frames = frames_of(w, h, args.frames, rng)
        bag = work / f"bag_{size}"
        write_bag(bag, frames, args.storage)
        for rgb in frames[:3]:  # warm-up
            seg.set_image(rgb)
            seg.segment(COMMAND)
        model_only = min(_time_model(seg, frames) for _ in range(args.repeats))
        runs = []
        for k in range(args.repeats):
            runner = BagRunner(seg, RunConfig(command=COMMAND), progress=False)
            t0 = time.perf_counter()
            summary = runner.run(bag, work / f"out_{size}_{k}")
            runs.append((time.perf_counter() - t0, runner, k))
            if summary["frames"] != args.frames:
                raise RuntimeError(f"runner recorded {summary['frames']} of {args.frames} frames")
        wall, runner, k = min(runs, key=lambda r: r[0])
        recs = [json.loads(x) for x in open(work / f"out_{size}_{k}" / "frames.jsonl")]
        conv = sum(r["conv_ms"] for r in recs) / 1e3
        share = (wall - runner.model_s) / wall
        print(f"{size}: lens-bag run {args.frames / wall:6.1f} frames/s  "
              f"(model alone {args.frames / model_only:6.1f} frames/s)")
        print(f"  outside the model: {share * 100:5.1f} % of {wall:.2f} s  (target < "
              f"{TARGET_SHARE * 100:.0f} %)  [decode {conv * 1e3 / args.frames:.2f} ms/frame, "
              f"rest (bag I/O, overlay, results) "
              f"{(wall - runner.model_s - conv) * 1e3 / args.frames:.2f} ms/frame; "
              f"model {runner.model_s * 1e3 / args.frames:.1f} ms/frame]")


def _time_model(seg, frames: list[np.ndarray]) -> float:
    """Seconds for the model alone (set_image + segment) over already-decoded frames."""
    t0 = time.perf_counter()
    for rgb in frames:
        seg.set_image(rgb)
        seg.segment(COMMAND)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
