"""``lens-train init``: the LENS starting checkpoint from the two files a researcher downloads.

Inputs:

* a Hugging Face Qwen2.5-VL Instruct folder (``config.json``, ``*.safetensors`` with or without
  ``model.safetensors.index.json``, tokenizer and processor files), e.g. Qwen2.5-VL-3B-Instruct.
  Its parameter names are either the transformers-4.x ones of the hub release (``model.layers.*``,
  ``visual.*``, ``lm_head.weight``) or transformers 5's (``model.language_model.*``,
  ``model.visual.*``); both map onto :class:`LensModel` through
  :func:`lens_ros.model.checkpoints.from_released_key`.
* an official SAM 2 checkpoint (Meta's ``sam2_hiera_large.pt``): a torch zip whose top-level dict
  holds ``"model"``, the state dict of ``SAM2Base`` under SAM 2's own names. It is read with
  ``torch.load(weights_only=True)`` (tensors only, nothing unpickled). LENS keeps those names
  under ``sam.`` and deletes SAM 2's memory modules (``maskmem_tpos_enc``, ``memory_attention``,
  ``memory_encoder``), so their keys are dropped; every other key must exist in the model.

LENS' own modules are initialised as the reference does: ``learnable_query`` and
``conv_1d.weight`` ~ N(0, 0.02), ``conv_1d.bias`` = 0 (its ``_init_custom_params``); the connector's
and ``proj_to_sam``'s linear layers as transformers initialises weights a Qwen2.5-VL checkpoint
lacks (weight ~ N(0, ``initializer_range`` = 0.02), bias 0); LayerNorms weight 1, bias 0; the
connector's ``pos_embed`` zeros.

The model is assembled on the meta device and only the checkpoint's tensors are materialised,
so building the 3B model needs about its bf16 size in memory. The result is checked to cover the
model's state dict exactly (zero missing, zero unexpected keys, every shape equal) before it is
written with :func:`lens_ros.model.checkpoints.save_checkpoint`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open

from lens_ros.core import CheckpointError
from lens_ros.model.checkpoints import (CONFIG_NAME, TIED_KEY, config_from_json,
                                        from_released_key, load_processor, save_checkpoint,
                                        weight_files)
from lens_ros.model.config import InferenceConfig, LensConfig
from lens_ros.model.sam import MEMORY_MODULES

log = logging.getLogger(__name__)

#: LENS' modules that neither input file holds (initialised here)
HEAD_PREFIXES = ("learnable_query", "connector.", "conv_1d.", "proj_to_sam.")
INIT_STD = 0.02  #: the reference's N(0, 0.02) and Qwen2.5-VL's ``initializer_range``
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def lens_config_from_qwen(qwen_dir: str | Path, preset: str = "lens-3b") -> LensConfig:
    """LensConfig: language model, vision tower and token ids from the Qwen folder's
    ``config.json``; head, SAM 2 sizes and image processing from the preset (``lens-3b``: 64
    queries, 4-block connector, SAM 2 Hiera-L at 1024 px)."""
    from lens_ros.model.presets import get_preset

    file = Path(qwen_dir) / CONFIG_NAME
    if not file.is_file():
        raise CheckpointError(f"{file} is missing; give a Hugging Face Qwen2.5-VL folder")
    qwen = config_from_json(json.loads(file.read_text()), str(file))
    cfg = get_preset(preset).config()
    for name in ("text_config", "vision_config", "image_token_id", "video_token_id",
                 "vision_start_token_id", "vision_end_token_id", "tie_word_embeddings"):
        setattr(cfg, name, getattr(qwen, name))
    cfg.validate()
    return cfg


def read_qwen_weights(qwen_dir: str | Path) -> dict[str, torch.Tensor]:
    """The Qwen folder's tensors under :class:`LensModel` names (``model.language_model.*``,
    ``model.visual.*``, ``lm_head.weight``)."""
    out: dict[str, torch.Tensor] = {}
    for file in weight_files(Path(qwen_dir)):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                out[from_released_key(key)] = f.get_tensor(key)
    return out


def read_sam2_weights(sam2_pt: str | Path) -> dict[str, torch.Tensor]:
    """Meta's SAM 2 ``.pt`` as ``sam.*`` tensors, memory modules dropped.

    Raises CheckpointError when the file is not a SAM 2 checkpoint (no ``"model"`` dict of
    tensors) or holds anything ``weights_only`` refuses.
    """
    path = Path(sam2_pt)
    if not path.is_file():
        raise CheckpointError(f"SAM 2 checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling refusal is a bad file here
        raise CheckpointError(f"cannot read {str(path)!r} as a SAM 2 checkpoint with "
                              f"weights_only=True: {err}") from None
    state = data.get("model") if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise CheckpointError(f"{str(path)!r} is not an official SAM 2 checkpoint: expected a "
                              "dict with 'model' = SAM2Base state dict (Meta's sam2_*.pt format)")
    return {f"sam.{k}": v for k, v in state.items()
            if k.split(".", 1)[0] not in MEMORY_MODULES}


def init_head_tensors(model, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fresh tensors for LENS' own modules (names and shapes of ``model``, which may be on the
    meta device), initialised as the module docstring states."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        if not name.startswith(HEAD_PREFIXES):
            continue
        leaf = name.rsplit(".", 1)[-1]
        value = torch.zeros(t.shape, dtype=torch.float32)
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        if name == "learnable_query" or (leaf == "weight"
                                         and isinstance(owner, (torch.nn.Linear, torch.nn.Conv1d))):
            value.normal_(0.0, INIT_STD, generator=gen)
        elif leaf == "weight" and isinstance(owner, torch.nn.LayerNorm):
            value.fill_(1.0)
        out[name] = value  # biases, pos_embed: zeros
    return out


def check_coverage(model, tensors: dict[str, torch.Tensor]) -> None:
    """CheckpointError unless ``tensors`` covers ``model.state_dict()`` exactly (the tied
    ``lm_head.weight`` may be absent) with equal shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = model.lens_config.tie_word_embeddings
    missing = sorted(k for k in expected if k not in tensors and not (tied and k == TIED_KEY))
    unexpected = sorted(k for k in tensors if k not in expected)
    shapes = sorted(f"{k} {tuple(v.shape)} != {expected[k]}" for k, v in tensors.items()
                    if k in expected and tuple(v.shape) != expected[k])
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"the inputs do not fit the LENS model: missing {missing[:8]}, unexpected "
            f"{unexpected[:8]}, shape mismatches {shapes[:8]} ({len(missing)}/{len(unexpected)}/"
            f"{len(shapes)} in all); is the SAM 2 file the SAM 2.0 variant of the preset "
            "(sam2_hiera_large.pt for lens-3b, not a SAM 2.1 file) and the Qwen folder a "
            "Qwen2.5-VL one?")


def build_init_checkpoint(qwen_dir: str | Path, sam2_pt: str | Path, out: str | Path,
                          preset: str = "lens-3b", dtype: str = "bfloat16",
                          seed: int = 0) -> Path:
    """Write the LENS starting checkpoint to ``out`` (config, safetensors, generation config,
    the Qwen folder's processor, the preset's inference defaults); returns ``out``.

    Arguments:
      qwen_dir: Hugging Face Qwen2.5-VL Instruct folder.
      sam2_pt: Meta's SAM 2 checkpoint (``sam2_hiera_large.pt`` for LENS-3B).
      preset: LENS preset giving the head, SAM 2 and processing sizes (``lens-3b``).
      dtype: ``bfloat16`` (default, the released checkpoints' dtype), ``float16`` or ``float32``.
      seed: seed of the head initialisation.
    """
    from lens_ros.model.presets import build_lens, get_preset

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {sorted(DTYPES)}")
    cfg = lens_config_from_qwen(qwen_dir, preset)
    processor = load_processor(qwen_dir)
    skeleton = build_lens(cfg, device="meta")
    tensors = read_qwen_weights(qwen_dir)
    tensors.update(read_sam2_weights(sam2_pt))
    tensors.update(init_head_tensors(skeleton, seed))
    if cfg.tie_word_embeddings:
        tensors.pop(TIED_KEY, None)
    check_coverage(skeleton, tensors)
    # non-persistent buffers are not in the state dict; persistent ones come with the tensors
    tensors = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in tensors.items()}
    gen_file = Path(qwen_dir) / "generation_config.json"
    if gen_file.is_file():
        from transformers import GenerationConfig

        skeleton.generation_config = GenerationConfig.from_pretrained(str(qwen_dir))
    inference = InferenceConfig().replace(**get_preset(preset).inference)
    out = save_checkpoint(skeleton, out, processor=processor, inference=inference,
                          state_dict=tensors)
    log.info("wrote the LENS starting checkpoint (%d tensors, %s) to %s", len(tensors), dtype,
             out)
    return out
