"""Hugging Face-style LENS checkpoints: ``config.json`` + safetensors (+ tokenizer/processor).

Parameter names in the files are exactly the released checkpoint's (transformers 4.51 naming):
``model.layers.*``, ``model.embed_tokens.weight``, ``model.norm.weight``, ``visual.*``,
``lm_head.weight`` (tied; may be absent), ``learnable_query``, ``connector.*``, ``conv_1d.*``,
``proj_to_sam.{0,2}.*`` and ``sam.*`` (original SAM 2 names). transformers 5 calls the Qwen parts
``model.language_model.*`` and ``model.visual.*``; :func:`to_released_key` /
:func:`from_released_key` map between the two. Weights are read with ``safetensors`` only (never
unpickled); a missing file, key or shape raises :class:`CheckpointError` naming it, nothing is
silently re-initialised.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lens_ros.core import CheckpointError
from lens_ros.model.config import QWEN25_VL_3B_TEXT, QWEN25_VL_3B_VISION, InferenceConfig, LensConfig

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
INFERENCE_NAME = "inference_config.json"
GENERATION_NAME = "generation_config.json"
TIED_KEY = "lm_head.weight"
_OURS_TEXT, _OURS_VISION = "model.language_model.", "model.visual."


def to_released_key(name: str) -> str:
    """transformers-5 parameter name -> released (transformers-4.51) name."""
    if name.startswith(_OURS_TEXT):
        return "model." + name[len(_OURS_TEXT):]
    if name.startswith(_OURS_VISION):
        return "visual." + name[len(_OURS_VISION):]
    return name


def from_released_key(name: str) -> str:
    """Released (or transformers-5) parameter name -> transformers-5 name of :class:`LensModel`."""
    if name.startswith((_OURS_TEXT, _OURS_VISION)):
        return name
    if name.startswith("model."):
        return _OURS_TEXT + name[len("model."):]
    if name.startswith("visual."):
        return _OURS_VISION + name[len("visual."):]
    return name


def released_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict under the released names (``lm_head.weight`` included)."""
    return {to_released_key(k): v for k, v in model.state_dict().items()}


# ---- config.json ---------------------------------------------------------------------------
def config_to_json(cfg: LensConfig, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Our ``config.json``: the full LensConfig under ``"lens"`` plus the reference's head keys."""
    data = {"model_type": "lens", "architectures": ["LensModel"],
            "num_of_query": cfg.num_queries, "if_use_qwen_connector": cfg.use_connector,
            "lens": cfg.to_dict()}
    if dtype is not None:
        data["torch_dtype"] = str(dtype).replace("torch.", "")
    return data


def config_from_json(data: dict[str, Any], source: str = "config.json") -> LensConfig:
    """LensConfig from our ``config.json`` or from a released LENS one.

    The released file is written by ``SAMR1Config(Qwen2VLConfig)``: ``model_type`` is probably
    ``qwen2_vl`` (possibly ``qwen2_5_vl``), the text keys are flat, ``vision_config`` is nested and
    the head is described by ``num_of_query`` / ``if_use_qwen_connector``; SAM 2 is Hiera-L.
    """
    if "lens" in data:
        try:
            return LensConfig.from_dict(data["lens"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: invalid 'lens' section: {err}") from None
    if data.get("model_type") not in ("qwen2_vl", "qwen2_5_vl"):
        raise CheckpointError(f"{source}: model_type {data.get('model_type')!r} is neither a LENS "
                              "config (no 'lens' section) nor a released LENS/Qwen2.5-VL config")
    flat = {**data, **(data.get("text_config") or {})}
    text = {k: flat.get(k, v) for k, v in QWEN25_VL_3B_TEXT.items()}
    if "rope_scaling" not in flat and isinstance(flat.get("rope_parameters"), dict):
        text["rope_scaling"] = flat["rope_parameters"]
    vis_in = dict(data.get("vision_config") or {})
    if "in_chans" in vis_in and "in_channels" not in vis_in:
        vis_in["in_channels"] = vis_in["in_chans"]
    vision = {k: vis_in.get(k, v) for k, v in QWEN25_VL_3B_VISION.items()}
    ids = {k: data[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                "vision_end_token_id") if k in data}
    cfg = LensConfig(text_config=text, vision_config=vision,
                     tie_word_embeddings=bool(flat.get("tie_word_embeddings", True)),
                     num_queries=int(data.get("num_of_query") or 64),
                     use_connector=bool(data.get("if_use_qwen_connector", True)), **ids)
    cfg.conv_kernel_size = cfg.num_queries
    return cfg


# ---- saving --------------------------------------------------------------------------------
def save_checkpoint(model, directory: str | Path, processor=None,
                    inference: InferenceConfig | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None,
                    max_shard_bytes: int = 5 * 1024 ** 3) -> Path:
    """Write ``model`` (a LensModel) to ``directory`` in the released layout.

    Arguments:
      processor: the ImageOnlyQwen2_5_VLProcessor to save beside the weights (tokenizer too).
      inference (InferenceConfig | None): defaults written to ``inference_config.json``.
      state_dict: tensors to save instead of ``model.state_dict()`` (transformers-5 names).
      max_shard_bytes (int): larger checkpoints are sharded with ``model.safetensors.index.json``.
    Returns:
      the directory as a Path.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {to_released_key(k): v.detach().to("cpu").contiguous()
               for k, v in (state_dict if state_dict is not None else model.state_dict()).items()}
    if model.lens_config.tie_word_embeddings:
        tensors.pop(TIED_KEY, None)  # as transformers' save_pretrained drops the tied copy
    _write_shards(tensors, out, max_shard_bytes)
    any_tensor = next(iter(tensors.values()))
    (out / CONFIG_NAME).write_text(json.dumps(
        config_to_json(model.lens_config, any_tensor.dtype), indent=2) + "\n")
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    if processor is not None:
        processor.save_pretrained(out)
    if inference is not None:
        (out / INFERENCE_NAME).write_text(json.dumps(inference.to_dict(), indent=2) + "\n")
    return out


def _write_shards(tensors: dict[str, torch.Tensor], out: Path, max_bytes: int) -> None:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    for stale in list(out.glob("model*.safetensors")) + [out / WEIGHTS_INDEX_NAME]:
        stale.unlink(missing_ok=True)
    if len(shards) == 1:
        save_file(shards[0], str(out / WEIGHTS_NAME), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out / WEIGHTS_INDEX_NAME).write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")


# ---- loading -------------------------------------------------------------------------------
def read_config(directory: str | Path) -> LensConfig:
    """The LensConfig of a checkpoint directory (CheckpointError if absent or invalid)."""
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist")
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"{CONFIG_NAME} is missing in {str(path)!r}; is this a LENS "
                              "checkpoint directory?")
    try:
        data = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg_file} is not valid JSON: {err}") from None
    return config_from_json(data, str(cfg_file))


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint (single file or the shards of the index)."""
    index = directory / WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (directory / f).is_file()]
        if missing:
            raise CheckpointError(f"{WEIGHTS_INDEX_NAME} in {str(directory)!r} lists missing "
                                  f"shard file(s) {missing}")
        return [directory / f for f in files]
    if (directory / WEIGHTS_NAME).is_file():
        return [directory / WEIGHTS_NAME]
    raise CheckpointError(f"neither {WEIGHTS_NAME} nor {WEIGHTS_INDEX_NAME} found in "
                          f"{str(directory)!r} (weights are read from safetensors only)")


def load_weights(model, directory: str | Path) -> None:
    """Copy the checkpoint's tensors into ``model`` (a LensModel), checking names and shapes.

    Raises CheckpointError naming missing, unexpected or mis-shaped keys (released names).
    """
    directory = Path(directory)
    targets = model.state_dict()
    expected = set(targets)
    loaded: set[str] = set()
    unexpected: list[str] = []
    with torch.no_grad():
        for file in weight_files(directory):
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    name = from_released_key(key)
                    if name not in targets:
                        unexpected.append(key)
                        continue
                    tensor = f.get_tensor(key)
                    if tuple(tensor.shape) != tuple(targets[name].shape):
                        raise CheckpointError(
                            f"{file.name}: key {key!r} has shape {tuple(tensor.shape)}, the model "
                            f"expects {tuple(targets[name].shape)}; the config does not match "
                            "these weights")
                    targets[name].copy_(tensor)
                    loaded.add(name)
    missing = sorted(to_released_key(k) for k in expected - loaded)
    tied = model.lm_head.weight is model.get_input_embeddings().weight
    if tied and TIED_KEY in missing:
        missing.remove(TIED_KEY)  # shares the token embedding's storage
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key(s) {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected key(s) {_short(sorted(unexpected))}")
        raise CheckpointError(f"checkpoint {str(directory)!r} does not match the model: "
                              + "; ".join(parts) + ". Nothing was re-initialised; use the "
                              "checkpoint's own config.json or fix the file")


def _short(keys: list[str], n: int = 8) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(repr(k) for k in keys[:n]) + more


def load_processor(directory: str | Path):
    """The checkpoint's processor (tokenizer + image processor + chat template).

    Built from its parts rather than through the Auto classes, which would read config.json
    and only understand Qwen's own model types.
    """
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil)

    from lens_ros.model.processing import ImageOnlyQwen2_5_VLProcessor
    from lens_ros.model.prompts import CHAT_TEMPLATE

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise CheckpointError(f"tokenizer.json is missing in {str(directory)!r}; the checkpoint "
                              "must include its tokenizer files")
    if not any((directory / n).is_file() for n in ("preprocessor_config.json",
                                                   "processor_config.json")):
        raise CheckpointError(f"preprocessor_config.json (or processor_config.json) is missing "
                              f"in {str(directory)!r}")
    template = CHAT_TEMPLATE
    if (directory / "chat_template.jinja").is_file():
        template = (directory / "chat_template.jinja").read_text()
    elif (directory / "chat_template.json").is_file():
        template = json.loads((directory / "chat_template.json").read_text())["chat_template"]
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(directory))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"cannot load the processor from {str(directory)!r}: {err}") from err
    return ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=template)


def load_inference_config(directory: str | Path) -> InferenceConfig:
    """``inference_config.json`` of a checkpoint, or the library defaults."""
    file = Path(directory) / INFERENCE_NAME
    if not file.is_file():
        return InferenceConfig()
    try:
        return InferenceConfig.from_dict(json.loads(file.read_text()))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{file}: {err}") from None
