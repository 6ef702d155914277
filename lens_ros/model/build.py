"""Build a LENS model from a checkpoint directory: construction (this module) over the file
format (:mod:`lens_ros.model.checkpoints`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lens_ros.model.checkpoints import (GENERATION_NAME, load_inference_config, load_processor,
                                        load_weights, read_config)
from lens_ros.model.config import InferenceConfig
from lens_ros.model.modeling import LensModel


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
      model: the LensModel (eval mode, on the requested device and dtype).
      processor: ImageOnlyQwen2_5_VLProcessor, or None when ``with_processor=False``.
      inference (InferenceConfig): the checkpoint's inference defaults (else the library's).
    """

    model: Any
    processor: Any
    inference: InferenceConfig


def whole_parameters():
    """Context for building a model with whole (unpartitioned) parameters even while a DeepSpeed
    ZeRO-3 config is active: transformers otherwise builds Qwen's sub-models inside
    ``deepspeed.zero.Init`` (partitioned at construction), and the weights loaded here would land
    in empty tensors. DeepSpeed partitions the whole model when its engine is built."""
    import contextlib

    from transformers import modeling_utils

    return getattr(modeling_utils, "set_zero3_state", contextlib.nullcontext)()


def load_model(directory: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32):
    """Build a LensModel from ``config.json`` without random init, then load the safetensors."""
    from transformers.initialization import no_init_weights

    cfg = read_config(directory)
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build directly in the target dtype (no fp32 copy of 3B)
    try:
        with no_init_weights(), whole_parameters(), torch.device(device):
            model = LensModel(cfg)
    finally:
        torch.set_default_dtype(old_dtype)
    load_weights(model, directory)
    gen_file = Path(directory) / GENERATION_NAME
    if gen_file.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(directory))
    return model.eval()


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32,
                    with_processor: bool = True) -> LoadedCheckpoint:
    """Model, processor and inference defaults of one checkpoint directory."""
    read_config(directory)  # fail first on a wrong directory or config
    processor = load_processor(directory) if with_processor else None
    model = load_model(directory, device, dtype)
    return LoadedCheckpoint(model=model, processor=processor,
                            inference=load_inference_config(directory))
