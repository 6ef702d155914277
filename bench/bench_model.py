"""Per-stage timings of LensSegmenter on the CPU: tiny preset and a ~90M "small" configuration.

Prints, per configuration: LLM image preprocessing + vision tower, SAM image encoder, generate
(N greedy tokens), the LENS mask pass, a first command (set_image + segment) against a second
command on the same image (cached features: no SAM encoder, no image preprocessing), and a batch
of k commands against k separate calls. Random weights, so generation always runs to
``--max-new-tokens`` (EOS disabled). Seeded, one warm-up run, median of ``--repeats`` runs timed
with time.perf_counter(). Timings on a shared machine are noisy; never asserted.

    .venv/bin/python bench/bench_model.py [--configs tiny small] [--repeats 5] [--batch-k 4]
"""
from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lens_ros.model.config import InferenceConfig, LensConfig, ProcessingConfig, SamConfig
from lens_ros.model.presets import build_lens, tiny_config
from lens_ros.model.processing import build_processor, prepare_llm_image, prepare_sam_image
from lens_ros.model.segmenter import LensSegmenter
from lens_ros.model.tokenizer import build_bpe_tokenizer
from timing import median_ms  # bench/timing.py (scripts run with bench/ on sys.path)

IMAGE = Path(__file__).resolve().parents[1] / "test" / "data" / "tabletop.png"
COMMANDS = ["the red mug", "the blue box in front", "the yellow ball", "the laptop on the right"]


def small_config() -> LensConfig:
    """~90M parameters (not the ~220M ``mid`` preset): Qwen text 512x8, vision 256x4, SAM 2
    Hiera-T (sam2_hiera_t) at 512 px."""
    cfg = tiny_config()
    cfg.text_config.update({"hidden_size": 512, "intermediate_size": 1408,
                            "num_hidden_layers": 8, "num_attention_heads": 8,
                            "num_key_value_heads": 2,
                            "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]}})
    cfg.vision_config.update({"depth": 4, "hidden_size": 256, "intermediate_size": 512,
                              "num_heads": 4, "fullatt_block_indexes": [3],
                              "out_hidden_size": 512})
    cfg.connector_heads = 8
    cfg.sam = SamConfig(variant="sam2_hiera_t", image_size=512, embed_dim=96, num_heads=1,
                        stages=[1, 2, 7, 2], global_att_blocks=[5, 7, 9],
                        window_spec=[8, 4, 14, 7])
    cfg.processing = ProcessingConfig(max_pixels=448 * 448)
    return cfg


CONFIGS = {"tiny": tiny_config, "small": small_config}


def bench_config(name: str, args: argparse.Namespace, rgb: np.ndarray) -> None:
    torch.manual_seed(args.seed)
    cfg = CONFIGS[name]()
    tokenizer = build_bpe_tokenizer()
    model = build_lens(cfg, seed=args.seed)
    model.generation_config.eos_token_id = None  # random weights: always run max_new_tokens
    processor = build_processor(tokenizer, cfg.processing.min_pixels, cfg.processing.max_pixels)
    seg = LensSegmenter(model, processor, InferenceConfig(max_new_tokens=args.max_new_tokens))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"\n== {name}: {params:.1f}M parameters, SAM {cfg.sam.variant} at "
          f"{cfg.sam.image_size} px,"
          f" LLM hidden {cfg.hidden_size} x {cfg.text_config['num_hidden_layers']} layers,"
          f" image {rgb.shape[1]}x{rgb.shape[0]} ==")

    with torch.inference_mode():
        def llm_prep():
            llm = prepare_llm_image(rgb, processor)
            model.model.get_image_features(llm.pixel_values, llm.image_grid_thw)

        def sam_encoder():
            model.encode_sam_image(prepare_sam_image(rgb, cfg.sam.image_size,
                                                     cfg.processing.sam_pixel_mean,
                                                     cfg.processing.sam_pixel_std))

        prep_ms = median_ms(llm_prep, args.repeats)
        sam_ms = median_ms(sam_encoder, args.repeats)
    seg.set_image(rgb)
    r = seg.segment(COMMANDS[0])
    gen_ms = statistics.median(seg.segment(COMMANDS[0]).timings.generate_ms
                               for _ in range(args.repeats))
    mask_ms = statistics.median(seg.segment(COMMANDS[0]).timings.mask_ms
                                for _ in range(args.repeats))
    print(f"LLM image preprocessing + vision tower {prep_ms:8.1f} ms"
          f"   ({llm_tokens(rgb, processor)} image tokens)")
    print(f"SAM image encoder                     {sam_ms:8.1f} ms")
    print(f"generate ({args.max_new_tokens} greedy tokens)          {gen_ms:8.1f} ms"
          f"   ({gen_ms / args.max_new_tokens:.1f} ms/token)")
    print(f"mask pass (queries + SAM decoder)     {mask_ms:8.1f} ms"
          f"   (mask {r.mask.shape[1]}x{r.mask.shape[0]})")

    def first_command():
        seg.set_image(rgb)
        seg.segment(COMMANDS[0])

    first_ms = median_ms(first_command, args.repeats)
    second_ms = median_ms(lambda: seg.segment(COMMANDS[0]), args.repeats)
    print(f"first command on a new image          {first_ms:8.1f} ms (set_image + segment)")
    print(f"second command, cached features       {second_ms:8.1f} ms"
          f"   -> {first_ms / second_ms:.2f}x faster, saves {first_ms - second_ms:.1f} ms"
          f" (baseline: first command)")

    k = args.batch_k
    commands = (COMMANDS * k)[:k]
    batch_ms = median_ms(lambda: seg.segment_batch(commands), args.repeats)
    separate_ms = median_ms(lambda: [seg.segment(c) for c in commands], args.repeats)
    print(f"batch of {k} commands (one generate)    {batch_ms:8.1f} ms")
    print(f"{k} separate segment() calls            {separate_ms:8.1f} ms"
          f"   -> batch/separate = {batch_ms / separate_ms:.2f}")


def llm_tokens(rgb: np.ndarray, processor) -> int:
    return prepare_llm_image(rgb, processor).num_tokens


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small"], choices=sorted(CONFIGS),
                        help="configurations to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="greedy tokens generated per command")
    parser.add_argument("--batch-k", type=int, default=4, help="commands in the batch figure")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--image-scale", type=float, default=2.0,
                        help="upscale factor of test/data/tabletop.png (320x240)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and tokenizer")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    img = Image.open(IMAGE).convert("RGB")
    size = (round(img.width * args.image_scale), round(img.height * args.image_scale))
    rgb = np.asarray(img.resize(size, Image.BILINEAR))
    print(f"bench_model: torch {torch.__version__}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, seed {args.seed}, "
          f"median of {args.repeats} after 1 warm-up; CPU fp32, random weights")
    for name in args.configs:
        bench_config(name, args, rgb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
