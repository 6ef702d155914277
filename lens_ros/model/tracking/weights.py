"""The tracking head: SAM 2's video-model parts beside the LENS image encoder, and its weights.

LENS deletes SAM 2's memory modules (``samr1.py:296-298``), so a LENS checkpoint cannot track by
itself. The tracking head is a ``sam2`` ``SAM2Base`` built from the model's :class:`SamConfig`
with the memory modules kept and **without an image encoder** (the LENS model's Hiera + FPN is
shared, not copied): memory attention, memory encoder, ``maskmem_tpos_enc``, its own prompt
encoder and mask decoder, ``obj_ptr_proj``, ``mask_downsample``, ``no_obj_ptr``, ``no_mem_*``.

Weights (``tracker.safetensors`` + ``tracker_config.json`` in a directory, usually the model's)
use SAM 2's own parameter names without the ``image_encoder.`` prefix, so that:

* for the released LENS-3B (whose frozen image encoder *is* SAM 2.0 Hiera-L) the head is
  SAM 2's own video model: ``python -m lens_ros.model.tracking.weights convert
  --sam2 sam2_hiera_large.pt --out <model dir>`` copies them out of Meta's checkpoint
  (read with ``torch.load(weights_only=True)``, never unpickled);
* for the demo model they come from ``lens_ros.demo.tracker_training`` (trained on synthetic
  sequences, the LENS weights frozen).

The head always runs in float32: it is small, and the ``sam2`` package's dense positional
encoding fails in bf16.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sam2.modeling.sam2_base import SAM2Base

from lens_ros.core import CheckpointError
from lens_ros.model.config import SamConfig
from lens_ros.model.sam import memory_modules, build_sam

TRACKER_WEIGHTS = "tracker.safetensors"
TRACKER_CONFIG = "tracker_config.json"
#: SamConfig fields that only shape the tracking head (a tracker may override them)
MEMORY_FIELDS = ("num_maskmem", "memory_attention_layers", "memory_attention_ff", "memory_dim",
                 "fuser_layers")


def head_sam_config(sam: SamConfig, overrides: dict | None = None) -> SamConfig:
    """The model's SamConfig with the memory modules kept and ``overrides`` (MEMORY_FIELDS)."""
    overrides = dict(overrides or {})
    bad = sorted(set(overrides) - set(MEMORY_FIELDS))
    if bad:
        raise ValueError(f"tracker overrides {bad} are not memory fields; allowed: "
                         f"{list(MEMORY_FIELDS)}")
    return dataclasses.replace(sam, keep_memory_modules=True, **overrides)


def build_tracking_head(cfg: SamConfig) -> SAM2Base:
    """An empty head (parameters on the meta device, no image encoder): load weights with
    ``head.load_state_dict(sd, strict=True, assign=True)``. Building on meta skips both the
    random init and the unused image encoder (224 M parameters for Hiera-L)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        head = build_sam(cfg)
    del head.image_encoder
    return head


def _ready(head: SAM2Base, state: dict[str, torch.Tensor], device, source: str) -> SAM2Base:
    expected = set(head.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(f"tracking weights {source!r} do not fit the tracking head: "
                              f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                              f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
                              "; were they made for another SAM 2 size?")
    targets = head.state_dict()
    for k, v in state.items():
        if tuple(v.shape) != tuple(targets[k].shape):
            raise CheckpointError(f"tracking weights {source!r}: {k!r} has shape "
                                  f"{tuple(v.shape)}, the head expects {tuple(targets[k].shape)}")
    head.load_state_dict({k: v.to(device, torch.float32) for k, v in state.items()},
                         strict=True, assign=True)
    return head.to(device, torch.float32).eval()


def init_tracking_head(lens_sam: torch.nn.Module, cfg: SamConfig, seed: int = 0,
                       device: str | torch.device | None = None) -> SAM2Base:
    """A head whose decoder, prompt encoder and pointer parts are copies of the LENS model's and
    whose memory modules are freshly initialised (``seed``): the start of tracker training.
    It cannot track before it is trained (random memory attention carries no target)."""
    device = device or lens_sam.no_mem_embed.device
    state = {k: v.detach().float().clone() for k, v in lens_sam.state_dict().items()
             if not k.startswith("image_encoder.")}
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(seed)
        attention, encoder = memory_modules(cfg)
        tpos = torch.nn.init.trunc_normal_(torch.zeros(cfg.num_maskmem, 1, 1, cfg.memory_dim),
                                           std=0.02)
    state.update({f"memory_attention.{k}": v for k, v in attention.state_dict().items()})
    state.update({f"memory_encoder.{k}": v for k, v in encoder.state_dict().items()})
    state["maskmem_tpos_enc"] = tpos
    return _ready(build_tracking_head(cfg), state, device, "init")


#: suffix of the per-row float16 scales of an int8-stored matrix ``<name>`` in a head file
SCALE_SUFFIX = ":int8_row_scale"
#: matrices with at least this many elements are stored as int8 when ``int8_rows`` is asked for
INT8_MIN_ELEMENTS = 4096


def quantize_rows(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Symmetric per-output-row int8 for every float tensor of >= 2 dims and
    :data:`INT8_MIN_ELEMENTS` elements: ``name`` -> int8 values, ``name + SCALE_SUFFIX`` ->
    (rows,) float16 scales (row absmax / 127); the rest unchanged. Error per weight: half a
    step, plus < 0.07 step from the fp16 rounding of the scale."""
    out = {}
    for k, v in tensors.items():
        if v.is_floating_point() and v.dim() >= 2 and v.numel() >= INT8_MIN_ELEMENTS:
            rows = v.float().reshape(v.shape[0], -1)
            scale = (rows.abs().amax(1) / 127).clamp(min=1e-8).half()
            out[k] = (rows / scale.float()[:, None]).round().clamp(-127, 127).to(
                torch.int8).reshape(v.shape).contiguous()
            out[k + SCALE_SUFFIX] = scale
        else:
            out[k] = v
    return out


def dequantize_rows(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`quantize_rows` (float32 for the int8 matrices; others unchanged)."""
    out = {}
    for k, v in tensors.items():
        if k.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(k + SCALE_SUFFIX)
        if scale is not None:
            v = (v.float().reshape(v.shape[0], -1) * scale.float()[:, None]).reshape(v.shape)
        out[k] = v
    return out


def save_tracking_head(head: SAM2Base, directory: str | Path, cfg: SamConfig,
                       extra: dict | None = None, dtype: torch.dtype = torch.float32,
                       int8_rows: bool = False) -> Path:
    """Write ``tracker.safetensors`` (in ``dtype``; float16 halves a shipped file, and
    ``int8_rows`` stores the large matrices as int8 with per-row scales, :func:`quantize_rows`)
    and ``tracker_config.json`` (the memory sizes, plus ``extra`` notes) to ``directory``.
    Loading upcasts to the head's float32 either way."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype).contiguous()
               for k, v in head.state_dict().items()}
    if int8_rows:
        tensors = quantize_rows(tensors)
    save_file(tensors, str(out / TRACKER_WEIGHTS), metadata={"format": "pt"})
    data = {"memory": {f: getattr(cfg, f) for f in MEMORY_FIELDS}, **(extra or {})}
    (out / TRACKER_CONFIG).write_text(json.dumps(data, indent=2) + "\n")
    return out


def encoder_fingerprint(image_encoder: torch.nn.Module) -> list[float]:
    """Mean |w| of eight of the SAM image encoder's tensors: identifies the encoder a head was
    trained with (a retrained encoder changes them), tolerant of bf16/fp16 rounding."""
    state = image_encoder.state_dict()
    names = sorted(state)
    return [round(float(state[n].float().abs().mean()), 6)
            for n in names[::max(1, len(names) // 8)]]


def _tracker_json(directory: str | Path) -> dict:
    file = Path(directory) / TRACKER_CONFIG
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
        return data if isinstance(data, dict) else {}
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file} is not a valid tracker config: {err}") from None


def tracker_overrides(directory: str | Path) -> dict:
    """The memory sizes stored in ``tracker_config.json`` of ``directory`` ({} without it)."""
    return dict(_tracker_json(directory).get("memory", {}))


def check_encoder(directory: str | Path, image_encoder: torch.nn.Module) -> None:
    """CheckpointError when the head in ``directory`` was trained with another image encoder
    (its ``tracker_config.json`` records one; converted SAM 2 heads record none)."""
    expected = _tracker_json(directory).get("image_encoder_fingerprint")
    if not expected:
        return
    found = encoder_fingerprint(image_encoder)
    if len(found) != len(expected) or not torch.allclose(
            torch.tensor(found), torch.tensor(expected, dtype=torch.float32), rtol=2e-2,
            atol=1e-5):
        raise CheckpointError(f"the tracking head in {str(directory)!r} was trained with "
                              "another SAM image encoder than this model's (fingerprint "
                              f"{expected[:3]}... vs {found[:3]}...); retrain it for this model "
                              "with `python -m lens_ros.demo.tracker_training`")


def find_tracking_weights(path: str | Path) -> Path:
    """``path`` itself when it is a file, else ``path/tracker.safetensors``."""
    p = Path(path)
    file = p / TRACKER_WEIGHTS if p.is_dir() else p
    if not file.is_file():
        raise CheckpointError(f"no tracking weights at {str(file)!r}. Tracking needs SAM 2's "
                              "memory modules, which LENS checkpoints do not hold: convert "
                              "sam2_hiera_large.pt with `python -m "
                              "lens_ros.model.tracking.weights convert` (LENS-3B) or train them "
                              "with lens_ros.demo.tracker_training")
    return file


def read_tracking_state(file: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` head file, or of a SAM 2 ``.pt`` checkpoint (its
    ``"model"`` dict, loaded with ``weights_only=True``) without the image encoder."""
    file = Path(file)
    if file.suffix == ".safetensors":
        with safe_open(str(file), framework="pt") as f:
            return dequantize_rows({k: f.get_tensor(k) for k in f.keys()})
    try:
        data = torch.load(str(file), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"cannot read SAM 2 checkpoint {str(file)!r} with "
                              f"weights_only=True: {err}") from None
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(file)!r} holds no state dict (expected {{'model': ...}})")
    return {k: v for k, v in state.items() if not k.startswith("image_encoder.")}


def load_tracking_head(path: str | Path, sam: SamConfig, device: str | torch.device = "cpu",
                       image_encoder: torch.nn.Module | None = None
                       ) -> tuple[SAM2Base, SamConfig]:
    """Head + its SamConfig from a directory/file of tracking weights (see module doc);
    ``image_encoder`` (the LENS model's) is checked against the one the head was trained with."""
    file = find_tracking_weights(path)
    if image_encoder is not None:
        check_encoder(file.parent, image_encoder)
    cfg = head_sam_config(sam, tracker_overrides(file.parent))
    return _ready(build_tracking_head(cfg), read_tracking_state(file), device, str(file)), cfg


# ---- CLI -------------------------------------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lens_ros.model.tracking.weights",
        description="Tracking-head weights: convert a SAM 2 checkpoint for a LENS model.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    conv = sub.add_parser("convert", help="copy SAM 2's video-model weights (all but the image "
                          "encoder) out of a SAM 2.0 checkpoint into tracker.safetensors")
    conv.add_argument("--sam2", required=True, help="SAM 2.0 checkpoint, e.g. "
                      "sam2_hiera_large.pt (the one LENS-3B was trained from)")
    conv.add_argument("--model", required=True, help="LENS checkpoint directory whose SAM "
                      "config the head must fit (its config.json is read)")
    conv.add_argument("--out", help="output directory (default: --model)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from lens_ros.model.checkpoints import read_config

    try:
        sam = read_config(args.model).sam
        cfg = head_sam_config(sam)
        head = _ready(build_tracking_head(cfg), read_tracking_state(args.sam2), "cpu", args.sam2)
        out = save_tracking_head(head, args.out or args.model, cfg,
                                 {"source": Path(args.sam2).name})
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out / TRACKER_WEIGHTS} ({len(head.state_dict())} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

