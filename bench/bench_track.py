"""Per-frame cost of SAM 2 memory tracking against a full LENS call, on the CPU.

For each configuration: a full LENS call on a new frame (set_image + segment: what track mode
pays when it re-acquires) and one tracked frame (Tracker.track: SAM 2 image encoder + memory
attention + mask decoder + memory encoder, with a full memory bank), their ratio (target
<= 0.1) and the tracker's stages. Configurations: ``tiny`` and the ``small`` one of
bench_model.py (random weights; generation runs to ``--max-new-tokens``, EOS disabled),
``scaled`` (LENS-3B's proportions: an LLM ~15x the SAM 2 parameters, as 3.75 B : 0.22 B), and
the demo model (``--demo``, trained weights; its own answers) when it exists. Seeded, one
warm-up, median of ``--repeats`` with time.perf_counter(); a shared machine makes these noisy.

    .venv/bin/python bench/bench_track.py [--configs tiny small scaled] [--demo models/lens-demo]
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
from bench_model import small_config  # noqa: E402  (one definition of the ~90M config)
from timing import median_ms  # noqa: E402

from lens_ros.model.config import InferenceConfig, LensConfig  # noqa: E402
from lens_ros.model.presets import build_lens, tiny_config  # noqa: E402
from lens_ros.model.processing import build_processor  # noqa: E402
from lens_ros.model.segmenter import LensSegmenter  # noqa: E402
from lens_ros.model.tokenizer import build_bpe_tokenizer  # noqa: E402
from lens_ros.model.tracking.memory import Tracker  # noqa: E402
from lens_ros.synthetic import SceneConfig, make_sequence  # noqa: E402


def scaled_config() -> LensConfig:
    """LENS-3B's balance at CPU size: tiny SAM 2 at 256 px (6 M) + a 768 x 12 LLM (~90 M)."""
    cfg = tiny_config()
    cfg.text_config.update({"hidden_size": 768, "intermediate_size": 2048,
                            "num_hidden_layers": 12, "num_attention_heads": 12,
                            "num_key_value_heads": 2,
                            "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]}})
    cfg.vision_config.update({"depth": 4, "hidden_size": 256, "intermediate_size": 512,
                              "num_heads": 4, "fullatt_block_indexes": [3],
                              "out_hidden_size": 768})
    cfg.connector_heads = 12
    return cfg


CONFIGS = {"tiny": tiny_config, "small": small_config, "scaled": scaled_config}


def random_segmenter(name: str, args) -> LensSegmenter:
    cfg = CONFIGS[name]()
    model = build_lens(cfg, seed=args.seed)
    model.generation_config.eos_token_id = None  # random weights: always run max_new_tokens
    processor = build_processor(build_bpe_tokenizer(), cfg.processing.min_pixels,
                                cfg.processing.max_pixels)
    return LensSegmenter(model, processor, InferenceConfig(max_new_tokens=args.max_new_tokens))


def bench(name: str, seg: LensSegmenter, tracker: Tracker, seq, args) -> None:
    model = seg.model
    params = sum(p.numel() for p in model.parameters()) / 1e6
    sam = sum(p.numel() for p in model.sam.parameters()) / 1e6
    frames = [f.rgb for f in seq.frames]
    h, w = frames[0].shape[:2]
    print(f"\n== {name}: {params:.1f}M parameters (SAM 2 {sam:.1f}M at "
          f"{model.lens_config.sam.image_size} px, tracking head "
          f"{sum(p.numel() for p in tracker.head.parameters()) / 1e6:.1f}M), frames {w}x{h} ==")
    it = iter(range(10 ** 9))

    generate = []

    def lens_call():
        seg.set_image(frames[next(it) % len(frames)])
        out = seg.segment(seq.command)
        generate.append(out.timings.generate_ms)
        return out

    r = lens_call()
    lens_ms = median_ms(lens_call, args.repeats)
    tracker.start(frames[0], seq.masks[0], source=r)
    for f in frames[1:]:  # fill the memory bank (num_maskmem memories, 15 pointers)
        tracker.track(f)
    stages = []

    def track():
        out = tracker.track(frames[next(it) % len(frames)])
        stages.append(out.timings)

    track_ms = median_ms(track, args.repeats)
    enc = statistics.median(t.encode_ms for t in stages)
    rest = statistics.median(t.mask_ms for t in stages)
    ratio = track_ms / lens_ms
    print(f"full LENS call, new frame             {lens_ms:8.1f} ms"
          f"   (of which generate {statistics.median(generate):.0f} ms; baseline)")
    print(f"tracked frame                         {track_ms:8.1f} ms"
          f"   (SAM 2 image encoder {enc:.0f} ms + memory attention, decoder, memory encoder "
          f"{rest:.0f} ms)")
    print(f"tracking / LENS per frame             {ratio:8.3f}    (target <= 0.1: "
          f"{'met' if ratio <= 0.1 else 'NOT met'})")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=["tiny", "small", "scaled"],
                        choices=sorted(CONFIGS), help="random-weight configurations to time")
    parser.add_argument("--demo", default="models/lens-demo",
                        help="trained demo model directory (with tracker.safetensors); "
                             "skipped when absent")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="greedy tokens per LENS call of the random-weight configurations")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and the sequence")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"bench_track: torch {torch.__version__}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, seed {args.seed}, median of "
          f"{args.repeats} after 1 warm-up; CPU fp32")
    seq = make_sequence(np.random.default_rng(args.seed), 20, SceneConfig(width=320, height=240),
                        n_moving_distractors=1)
    for name in args.configs:
        seg = random_segmenter(name, args)
        bench(f"{name} (random weights, {args.max_new_tokens} tokens)", seg,
              Tracker.untrained(seg, seed=args.seed), seq, args)
    demo = Path(args.demo)
    if (demo / "config.json").is_file() and (demo / "tracker.safetensors").is_file():
        seg = LensSegmenter.from_pretrained(demo, device="cpu")
        demo_seq = make_sequence(np.random.default_rng(args.seed), 20, SceneConfig(),
                                 n_moving_distractors=1)
        bench(f"demo model {demo}", seg, Tracker.from_pretrained(seg, demo), demo_seq, args)
    else:
        print(f"\n(demo model: no config.json + tracker.safetensors in {demo}; skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
