"""What both trainers share: which parameters train, SAM image features, LENS-format checkpoints,
metrics files and the per-epoch sentence draw.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Iterable

import torch
from transformers import TrainerCallback

from lens_ros.model.checkpoints import load_weights, save_checkpoint
from lens_ros.model.modeling import LensModel, SamImageFeatures

log = logging.getLogger(__name__)

#: The LENS head on top of the language model (names as in the released checkpoint).
HEAD_PREFIXES = ("learnable_query", "connector.", "conv_1d.", "proj_to_sam.")

#: SAM parameters that never get a gradient from a single-mask, prompt-only LENS pass: the IoU
#: and object-score heads (their outputs are not in any loss), the multimask hypernetworks
#: (sliced away in training mode), the point/mask prompt embeddings (LENS gives neither), the
#: high-resolution projections ``conv_s0/conv_s1`` (applied inside the frozen image encoding)
#: and the video-only modules. Freezing them changes nothing the reference learns (its AdamW
#: has no weight decay) and lets DDP run with ``find_unused_parameters=False``.
_SAM_DECODER_FROZEN = ("iou_prediction_head.", "pred_obj_score_head.", "conv_s0.", "conv_s1.")


def _sam_decoder_trainable(name: str) -> bool:
    """Whether ``sam.<name>`` learns when the SAM mask decoder is trained."""
    if name.startswith("sam_prompt_encoder."):
        return name.startswith("sam_prompt_encoder.no_mask_embed.")
    if not name.startswith("sam_mask_decoder."):
        return False
    rest = name[len("sam_mask_decoder."):]
    if rest.startswith("output_hypernetworks_mlps."):
        return rest.split(".")[1] == "0"  # only the single-mask token's MLP is used in training
    return not rest.startswith(_SAM_DECODER_FROZEN)


def configure_trainable(model: LensModel, train_llm: bool, train_vision: bool,
                        train_head: bool = True, train_sam_decoder: bool = True) -> list[str]:
    """Set ``requires_grad`` of every parameter; returns the names that train.

    Arguments:
      train_llm: the language model (``model.language_model.*``, tied ``lm_head``).
      train_vision: the Qwen vision tower (``model.visual.*``).
      train_head: ``learnable_query``, ``connector``, ``conv_1d``, ``proj_to_sam``.
      train_sam_decoder: the SAM 2 mask decoder and ``no_mask_embed`` (minus the parts listed
        in ``_SAM_DECODER_FROZEN`` that receive no gradient). The SAM image encoder never trains.
    """
    names = []
    for name, p in model.named_parameters():
        if name.startswith("model.visual."):
            on = train_vision
        elif name.startswith(("model.", "lm_head.")):
            on = train_llm
        elif name.startswith(HEAD_PREFIXES):
            on = train_head
        elif name.startswith("sam."):
            on = train_sam_decoder and _sam_decoder_trainable(name[len("sam."):])
        else:
            on = False
        p.requires_grad_(on)
        if on:
            names.append(name)
    if not names:
        raise ValueError("no parameter would train; enable the head, the LLM or the SAM decoder")
    return names


@torch.no_grad()
def sam_features_by_key(model: LensModel, keys: list[str], rgb_by_key: dict,
                        make_pixels) -> dict[str, SamImageFeatures]:
    """SAM image features once per distinct image key (the G rollouts share one image).

    ``make_pixels(rgb) -> (1, 3, S, S)``; features are computed without gradient (the image
    encoder is frozen) on the model's device.
    """
    device = next(model.sam.parameters()).device
    unique = list(dict.fromkeys(keys))
    pixels = torch.cat([make_pixels(rgb_by_key[k]) for k in unique]).to(device)
    feats = model.encode_sam_image(pixels)
    return {k: feats.index(i) for i, k in enumerate(unique)}


def stack_features(feats: Iterable[SamImageFeatures]) -> SamImageFeatures:
    """Concatenate per-row features (each a batch of one) into one batch."""
    feats = list(feats)
    return SamImageFeatures(torch.cat([f.image_embed for f in feats]),
                            [torch.cat([f.high_res[j] for f in feats])
                             for j in range(len(feats[0].high_res))])


class LensCheckpointMixin:
    """Trainer mixin: checkpoints in the LENS layout (``lens_ros.model.checkpoints``).

    ``checkpoint-N/`` then holds ``config.json`` + ``model.safetensors`` (released key names),
    tokenizer/processor files, and the Trainer's optimizer/scheduler/RNG/trainer state, so
    ``LensSegmenter.from_pretrained(checkpoint-N)`` loads it and ``resume_from_checkpoint``
    continues the run (step counter and optimizer state). With LoRA the weights are saved
    merged (for inference) and the adapter separately in ``adapter/`` (for resuming).
    Under DeepSpeed/FSDP the engine's own checkpoint is used to resume.
    """

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        wrapped = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        if hasattr(wrapped, "get_base_model"):  # LoRA
            self._save_lora(wrapped, output_dir)
        else:
            save_checkpoint(wrapped, output_dir, processor=self.processing_class,
                            state_dict=state_dict)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _save_lora(self, peft_model, output_dir: str) -> None:
        """LoRA runs: ``adapter/`` (PEFT) for resuming, plus the merged LENS checkpoint."""
        from peft.tuners.lora import LoraLayer

        peft_model.save_pretrained(os.path.join(output_dir, "adapter"))
        base = peft_model.get_base_model()
        merged = {k.replace(".base_layer", ""): v for k, v in base.state_dict().items()
                  if ".lora_" not in k}
        with torch.no_grad():  # W + delta computed aside: merge/unmerge in place would round W
            for name, module in base.named_modules():
                if isinstance(module, LoraLayer):
                    for adapter in module.active_adapters:
                        key = f"{name}.weight"
                        merged[key] = merged[key] + module.get_delta_weight(adapter)
        save_checkpoint(base, output_dir, processor=self.processing_class, state_dict=merged)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        adapter = Path(resume_from_checkpoint) / "adapter"
        if hasattr(target, "get_base_model") and adapter.is_dir():
            # LoRA: the base LLM is frozen (unchanged since the start); restore the adapter and
            # the fully trained non-LoRA parameters (head, SAM decoder) from the merged file
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            weights = load_file(str(adapter / "adapter_model.safetensors"))
            set_peft_model_state_dict(target, weights)
            base = target.get_base_model()
            names = [n for n, p in base.named_parameters()
                     if p.requires_grad and ".lora_" not in n]
            _load_named(base, resume_from_checkpoint, names)
            return None
        if hasattr(target, "get_base_model"):
            target = target.get_base_model()
        load_weights(target, resume_from_checkpoint)
        return None


def _load_named(model, directory: str, names: list[str]) -> None:
    """Copy the tensors ``names`` (model names) from a LENS checkpoint into ``model``."""
    from safetensors import safe_open

    from lens_ros.model.checkpoints import to_released_key, weight_files

    wanted = {to_released_key(n): n for n in names}
    params = dict(model.named_parameters())
    found = set()
    with torch.no_grad():
        for file in weight_files(Path(directory)):
            with safe_open(str(file), framework="pt") as f:
                for key in set(f.keys()) & set(wanted):
                    params[wanted[key]].copy_(f.get_tensor(key))
                    found.add(key)
    missing = sorted(set(wanted) - found)
    if missing:
        from lens_ros.core import CheckpointError

        raise CheckpointError(f"{directory}: cannot resume, missing trained tensors {missing[:8]}")


class EpochCallback(TrainerCallback):
    """Calls ``dataset.set_epoch(epoch)`` at each epoch start (new sentence draws per epoch)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(state.epoch or 0))


class MetricsFileCallback(TrainerCallback):
    """Appends every log record to ``metrics.jsonl`` and rewrites ``metrics.csv`` (main process).

    Each record is ``{"step": global_step, "epoch": ..., <logged metrics>}``. A resumed run
    appends to the same files; records of steps after the resume point are dropped first, so the
    files never hold one step twice.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.dir = Path(output_dir)
        self._trimmed = False

    @property
    def jsonl(self) -> Path:
        return self.dir / "metrics.jsonl"

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self._trimmed:
            return
        self._trimmed = True
        if self.jsonl.is_file():  # resume: forget records beyond the restored step
            keep = [r for r in read_metrics(self.jsonl) if r.get("step", 0) <= state.global_step]
            self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        rec = {"step": state.global_step, "epoch": state.epoch}
        rec.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and
                    not (isinstance(v, float) and math.isnan(v))})
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        records = read_metrics(self.jsonl)
        keys = list(dict.fromkeys(k for r in records for k in r))
        with open(self.dir / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(records)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (lines that are not JSON objects are skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out
