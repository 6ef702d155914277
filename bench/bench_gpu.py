"""LENS-3B-size timings on a GPU, each beside its floor: random weights in bf16, no download.

The ``lens-3b`` preset (Qwen2.5-VL-3B + SAM 2 Hiera-L at 1024 px) is built at full size with
random weights (the local BPE tokenizer's special-token ids replace Qwen's; the 151,936-row
embedding and every other shape stay the released ones) in bf16 on CUDA. Timed, median of
``--repeats`` after one warm-up, CUDA-synchronised, time.perf_counter():

* a command generating 1 token (prefill only), 64 and 256 tokens (EOS disabled): prefill,
  decode per token and the 64-query mask pass, end to end per command;
* the SAM 2 image encoder at its input size (1024 x 1024 for Hiera-L) and a whole new frame
  (``set_image``: LLM image preprocessing + vision tower + SAM encoder);
* a batch of 4 commands on one frame (one ``segment_batch``) against 4 separate calls;
* the fast mask pass (generation KV cache + 64 queries) against the faithful one (speed only:
  random weights say nothing about their agreement);
* a tracked frame (SAM 2 memory tracking, untrained head) against a full call on a new frame;
* peak GPU memory.

Floor of each figure = max(FLOPs / peak matrix rate, bytes read / memory bandwidth): FLOPs
counted by ``torch.utils.flop_counter`` on one run of the same call, bytes = the weights that
stage must read once (a decode step reads the whole language model: about 6.2 GB in bf16).
The device name, the bandwidth and the matrix rate assumed are printed first. ``--dry-run``
(or no CUDA device) runs the same code with the ``tiny`` preset in fp32 on the CPU to check it;
its figures and floors mean nothing.

    python bench/bench_gpu.py [--repeats 5] [--json out.json] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402  (bench/timing.py)

from lens_ros.model.config import InferenceConfig  # noqa: E402
from lens_ros.model.presets import LOCAL_TOKEN_IDS, build_lens, get_preset  # noqa: E402
from lens_ros.model.processing import build_processor, prepare_sam_image  # noqa: E402
from lens_ros.model.segmenter import LensSegmenter  # noqa: E402
from lens_ros.model.tokenizer import build_bpe_tokenizer  # noqa: E402
from lens_ros.model.tracking.memory import Tracker  # noqa: E402

IMAGE = Path(__file__).resolve().parents[1] / "test" / "data" / "tabletop.png"
COMMANDS = ["the red mug", "the blue box in front", "the yellow ball", "the laptop on the right"]
#: (bandwidth TB/s, dense bf16 matrix rate TFLOP/s) by a substring of the device name
DEVICE_PEAKS = {"H200": (4.8, 790.0), "H100": (3.35, 790.0)}


def build_segmenter(preset: str, device: torch.device, dtype: torch.dtype, seed: int):
    """A random-weight segmenter of ``preset`` at full size with the local BPE tokenizer."""
    cfg = get_preset(preset).config()
    for key, value in LOCAL_TOKEN_IDS.items():
        setattr(cfg, key, value)
    cfg.text_config.update({"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0})
    model = build_lens(cfg, device=device, dtype=dtype, seed=seed)
    model.generation_config.eos_token_id = None  # random weights: always run max_new_tokens
    processor = build_processor(build_bpe_tokenizer(), cfg.processing.min_pixels,
                                cfg.processing.max_pixels, cfg.vision_config["patch_size"],
                                cfg.vision_config["spatial_merge_size"])
    return LensSegmenter(model, processor, InferenceConfig(max_new_tokens=1))


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct parameter storages of ``module`` (tied weights once)."""
    seen, total = set(), 0
    for p in module.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def part_bytes(model) -> dict[str, int]:
    """Weight bytes of the language model (incl. lm_head), vision tower, SAM 2, LENS head."""
    parts = {"llm": 0, "vision": 0, "sam": 0, "head": 0}
    seen = set()
    for name, p in model.named_parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        key = ("sam" if name.startswith("sam.") else "vision" if "visual" in name else
               "llm" if name.startswith(("model.", "lm_head")) else "head")
        parts[key] += p.numel() * p.element_size()
    return parts


class Floors:
    """max(FLOPs / rate, bytes / bandwidth) in ms, and a FLOP counter for one call."""

    def __init__(self, bandwidth_tbs: float, tflops: float):
        self.bw, self.rate = bandwidth_tbs * 1e12, tflops * 1e12

    @staticmethod
    def flops(fn) -> float:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return float(counter.get_total_flops())

    def ms(self, flops: float, nbytes: float) -> float:
        return 1e3 * max(flops / self.rate, nbytes / self.bw)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median ms of ``fn`` (synchronised on CUDA), after one warm-up."""
    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return median_ms(run, repeats)


#: where :func:`row` keeps the figures so far (``--json``), so an interrupted run keeps them
JSON_PATH: Path | None = None


def row(results: dict, name: str, ms: float, floor_ms: float | None, note: str = "") -> None:
    results[name] = {"ms": ms, "floor_ms": floor_ms}
    if JSON_PATH is not None:
        JSON_PATH.write_text(json.dumps(results, indent=2))
    floor = f"floor {floor_ms:9.2f} ms  ({ms / floor_ms:6.1f}x)" if floor_ms else " " * 28
    print(f"{name:44s} {ms:9.2f} ms   {floor}  {note}")


def run(args) -> dict:
    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda" if cuda else "cpu")
    preset = "lens-3b" if cuda else "tiny"
    dtype = torch.bfloat16 if cuda else torch.float32
    name = torch.cuda.get_device_name() if cuda else "CPU (dry run)"
    bw, rate = next((v for k, v in DEVICE_PEAKS.items() if k in name),
                    (args.bandwidth, args.tflops))
    bw, rate = args.bandwidth or bw, args.tflops or rate
    floors = Floors(bw, rate)
    print(f"bench_gpu: {name}, torch {torch.__version__}, preset {preset} in {dtype}, random "
          f"weights; floors assume {bw:g} TB/s memory bandwidth and {rate:g} TFLOP/s matrix "
          f"rate; median of {args.repeats} after 1 warm-up")
    if not cuda:
        print("DRY RUN: the tiny preset on the CPU checks the code; figures and floors mean "
              "nothing")
    t0 = time.perf_counter()
    seg = build_segmenter(preset, device, dtype, args.seed)
    model = seg.model
    parts = part_bytes(model)
    print(f"built in {time.perf_counter() - t0:.1f} s: weights {sum(parts.values()) / 1e9:.2f} "
          f"GB (language model {parts['llm'] / 1e9:.2f}, vision {parts['vision'] / 1e9:.2f}, "
          f"SAM 2 {parts['sam'] / 1e9:.2f}, LENS head {parts['head'] / 1e9:.3f})")
    img = Image.open(IMAGE).convert("RGB")
    rgb = np.asarray(img.resize((round(img.width * args.image_scale),
                                 round(img.height * args.image_scale)), Image.BILINEAR))
    results: dict = {"device": name, "preset": preset, "dtype": str(dtype),
                     "bandwidth_tbs": bw, "tflops": rate, "weights": parts}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        bench_frame(seg, rgb, floors, parts, device, args, results)
        bench_commands(seg, rgb, floors, parts, device, args, results)
        bench_tracking(seg, rgb, device, args, results)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2 ** 30
        results["peak_memory_gib"] = peak
        print(f"{'peak GPU memory':44s} {peak:9.2f} GiB  (weights "
              f"{sum(parts.values()) / 2 ** 30:.2f} GiB)")
    return results


def bench_frame(seg, rgb, floors, parts, device, args, results) -> None:
    model, lc = seg.model, seg.model.lens_config
    sam_px = prepare_sam_image(rgb, lc.sam.image_size, lc.processing.sam_pixel_mean,
                               lc.processing.sam_pixel_std).to(device, model.dtype)
    encode = lambda: model.encode_sam_image(sam_px)  # noqa: E731
    row(results, f"SAM 2 image encoder at {lc.sam.image_size}^2",
        timed(encode, device, args.repeats), floors.ms(floors.flops(encode), parts["sam"]))
    new_frame = lambda: seg.set_image(rgb)  # noqa: E731
    row(results, f"new frame (set_image, {rgb.shape[1]}x{rgb.shape[0]})",
        timed(new_frame, device, args.repeats),
        floors.ms(floors.flops(new_frame), parts["sam"] + parts["vision"]),
        "LLM image prep + vision tower + SAM encoder")


def generate_flops(seg, fn) -> tuple[float, float]:
    """(FLOPs of the whole call ``fn``, FLOPs inside ``model.generate`` during it)."""
    model = seg.model
    inner = FlopCounterMode(display=False)
    original = model.generate

    def counted(*a, **k):
        with inner:
            return original(*a, **k)

    model.generate = counted
    try:
        total = Floors.flops(fn)
    finally:
        del model.generate  # back to the class's method
    return total, float(inner.get_total_flops())


def bench_commands(seg, rgb, floors, parts, device, args, results) -> None:
    seg.set_image(rgb)
    cmd = COMMANDS[0]
    llm_step = floors.ms(0.0, parts["llm"])  # one decode step reads the language model
    seg.configure(max_new_tokens=1)
    call_flops, prefill_flops = generate_flops(seg, lambda: seg.segment(cmd))
    prefill_floor = floors.ms(prefill_flops, parts["llm"])
    mask_floor = floors.ms(call_flops - prefill_flops, parts["llm"] + parts["head"])
    for n in args.tokens:
        seg.configure(max_new_tokens=n)
        ms = timed(lambda: seg.segment(cmd), device, args.repeats)
        row(results, f"command, {n} generated token(s)", ms,
            prefill_floor + (n - 1) * llm_step + mask_floor,
            "prefill + decode + mask pass" if n > 1 else "prefill + mask pass")
    gen = {}
    for n in (1, 2, max(args.tokens)):
        seg.configure(max_new_tokens=n)
        gen[n] = statistics.median(seg.segment(cmd).timings.generate_ms
                                   for _ in range(args.repeats))
    n_long = max(args.tokens)
    row(results, "prefill (1 generated token)", gen[1], prefill_floor)
    row(results, "decode, per token", (gen[n_long] - gen[2]) / max(1, n_long - 2), llm_step,
        f"({n_long} vs 2 tokens; floor = language-model weights / bandwidth)")
    seg.configure(max_new_tokens=args.batch_tokens)
    faithful = statistics.median(seg.segment(cmd).timings.mask_ms for _ in range(args.repeats))
    row(results, "64-query mask pass, faithful", faithful, mask_floor,
        "LLM over prompt + answer + 64 queries, connector, SAM decoder")
    seg.configure(fast_mask_pass=True)
    fast = statistics.median(seg.segment(cmd).timings.mask_ms for _ in range(args.repeats))
    row(results, "64-query mask pass, fast (KV cache)", fast, floors.ms(0.0, parts["llm"]),
        f"-> {faithful / fast:.2f}x faster than faithful (speed only)")
    seg.configure(fast_mask_pass=False)
    k = args.batch_k
    commands = (COMMANDS * k)[:k]
    one = timed(lambda: seg.segment(cmd), device, args.repeats)
    batch = timed(lambda: seg.segment_batch(commands), device, args.repeats)
    separate = timed(lambda: [seg.segment(c) for c in commands], device, args.repeats)
    row(results, f"batch of {k} commands, {args.batch_tokens} tokens", batch, one,
        f"floor = one command ({one:.1f} ms); {k} separate calls {separate:.1f} ms "
        f"-> batch/separate {batch / separate:.2f}")


def bench_tracking(seg, rgb, device, args, results) -> None:
    tracker = Tracker.untrained(seg)
    mask = np.zeros(rgb.shape[:2], bool)
    h, w = mask.shape
    mask[h // 4:h // 2, w // 4:w // 2] = True
    seg.configure(max_new_tokens=args.batch_tokens)

    def full():
        seg.set_image(rgb)
        seg.segment(COMMANDS[0])

    full_ms = timed(full, device, args.repeats)
    tracker.start(rgb, mask)
    for _ in range(8):  # fill the memory bank
        tracker.track(rgb)
    track_ms = timed(lambda: tracker.track(rgb), device, args.repeats)
    row(results, f"full call on a new frame, {args.batch_tokens} tokens", full_ms, None)
    row(results, "tracked frame (SAM 2 memory tracking)", track_ms,
        results[next(k for k in results if k.startswith("SAM 2 image encoder"))]["floor_ms"],
        f"-> tracked / full = {track_ms / full_ms:.3f} (floor = SAM encoder's)")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true",
                   help="tiny preset on the CPU, few tokens: checks the code in seconds")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    p.add_argument("--tokens", type=int, nargs="+", default=[1, 64, 256],
                   help="generated tokens per command (1 = prefill only)")
    p.add_argument("--batch-k", type=int, default=4, help="commands in the batch figure")
    p.add_argument("--batch-tokens", type=int, default=64,
                   help="generated tokens in the batch, mask-pass and tracking figures")
    p.add_argument("--bandwidth", type=float, default=0.0,
                   help="memory bandwidth in TB/s for the floors (default: by device name)")
    p.add_argument("--tflops", type=float, default=0.0,
                   help="dense bf16 matrix rate in TFLOP/s for the floors (default: by name)")
    p.add_argument("--image-scale", type=float, default=2.0,
                   help="upscale factor of test/data/tabletop.png (320x240)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.dry_run or not torch.cuda.is_available():
        args.tokens = sorted({t for t in args.tokens if t <= 16} | {1, 4})
        args.batch_tokens = min(args.batch_tokens, 8)
        args.repeats = min(args.repeats, 2)
        args.bandwidth = args.bandwidth or 0.05
        args.tflops = args.tflops or 0.5
    global JSON_PATH
    JSON_PATH = args.json
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
