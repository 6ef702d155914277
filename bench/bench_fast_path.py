"""Fast mask pass (generation KV cache + 64 queries) against the faithful LENS mask pass.

For each configuration and each synthetic test-split scene (its command): the faithful result
and the fast one on the same image; prints the mask agreement (mean and 10th percentile of the
IoU between the two masks; both empty counts 1), the share of scenes with agreement >= 0.98,
the mask-pass time of both (median) and the speed-up, and, for the trained demo model, each
path's mean IoU against the ground truth. The decision rule: the fast pass may be on
by default only if the mean agreement on the test split is >= 0.98. With random weights
(``tiny``, ``small``, ``scaled``) the agreement says nothing about a trained model; only the
speed-up is informative there. Seeded, one warm-up, time.perf_counter(); noisy shared machine.

    .venv/bin/python bench/bench_fast_path.py [--configs tiny] [--demo models/lens-demo]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_track import CONFIGS, random_segmenter  # noqa: E402

from lens_ros.evaluation.metrics import mask_iou  # noqa: E402
from lens_ros.model.segmenter import LensSegmenter  # noqa: E402
from lens_ros.synthetic import SceneConfig, make_split_scene  # noqa: E402


def bench(name: str, seg: LensSegmenter, scenes) -> None:
    agree, gt_faithful, gt_fast, ms_faithful, ms_fast = [], [], [], [], []
    seg.set_image(scenes[0].rgb)
    seg.segment(scenes[0].expressions[0].text)  # warm-up
    for scene in scenes:
        expr = scene.expressions[0]
        seg.set_image(scene.rgb)
        seg.configure(fast_mask_pass=False)
        a = seg.segment(expr.text)
        seg.configure(fast_mask_pass=True)
        b = seg.segment(expr.text)
        if a.answer != b.answer:  # generation is shared by design; a difference is a bug
            raise RuntimeError(f"answers differ on {expr.text!r}: {a.answer!r} / {b.answer!r}")
        agree.append(mask_iou(a.mask, b.mask))
        gt_faithful.append(mask_iou(a.mask, expr.mask))
        gt_fast.append(mask_iou(b.mask, expr.mask))
        ms_faithful.append(a.timings.mask_ms)
        ms_fast.append(b.timings.mask_ms)
    seg.configure(fast_mask_pass=False)
    agree = np.array(agree)
    mf, mq = statistics.median(ms_faithful), statistics.median(ms_fast)
    print(f"\n== {name}: {len(scenes)} test-split scenes ==")
    print(f"mask agreement fast vs faithful   mean IoU {agree.mean():.4f}, p10 "
          f"{np.percentile(agree, 10):.4f}, share >= 0.98: {(agree >= 0.98).mean():.2f}"
          f"   (default-on threshold: mean >= 0.98 -> "
          f"{'ON allowed' if agree.mean() >= 0.98 else 'keep OFF'})")
    print(f"mask pass                          faithful {mf:7.1f} ms, fast {mq:7.1f} ms"
          f"   -> {mf / mq:.2f}x (baseline: faithful)")
    print(f"mean IoU vs ground truth           faithful {np.mean(gt_faithful):.4f}, "
          f"fast {np.mean(gt_fast):.4f}")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=["tiny", "scaled"],
                        choices=sorted(CONFIGS), help="random-weight configurations")
    parser.add_argument("--demo", default="models/lens-demo",
                        help="trained demo model directory; skipped when absent")
    parser.add_argument("--scenes", type=int, default=400,
                        help="test-split scenes for the demo model (the split has 400)")
    parser.add_argument("--random-scenes", type=int, default=12,
                        help="scenes for each random-weight configuration (speed only)")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="greedy tokens of the random-weight configurations")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"bench_fast_path: torch {torch.__version__}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, seed {args.seed}; CPU fp32")
    for name in args.configs:
        scenes = [make_split_scene("test", i, SceneConfig(width=320, height=240))
                  for i in range(args.random_scenes)]
        bench(f"{name} (random weights: agreement meaningless)", random_segmenter(name, args),
              scenes)
    demo = Path(args.demo)
    if (demo / "config.json").is_file():
        seg = LensSegmenter.from_pretrained(demo, device="cpu")
        scenes = [make_split_scene("test", i) for i in range(args.scenes)]
        bench(f"demo model {demo}", seg, scenes)
    else:
        print(f"\n(demo model: no checkpoint in {demo}; skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
