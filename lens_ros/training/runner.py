"""Run a training stage end to end: starting model, data, trainer, resume, final checkpoint."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch
from transformers.trainer_utils import get_last_checkpoint

from lens_ros.core import CheckpointError
from lens_ros.training.configs import DataConfig, LensStage1Config, ModelArguments, build_items
from lens_ros.training.grpo_config import LensGRPOConfig

log = logging.getLogger(__name__)


def load_start_model(model_args: ModelArguments, output_dir: str):
    """(LensModel in train mode, processor) from ``model_path`` or a random-weight ``preset``."""
    from lens_ros.model.build import load_checkpoint
    from lens_ros.model.presets import save_preset_checkpoint

    path = model_args.model_path
    if path is None:
        if model_args.preset is None:
            raise CheckpointError("no starting model: set model_path (a LENS checkpoint) or "
                                  "preset (e.g. 'tiny' for a smoke run)")
        path = Path(output_dir) / "init"
        if not (path / "config.json").is_file():
            # written whole under a private name, then renamed: a reader (another rank, a rerun)
            # sees either no ``init`` or a complete one
            partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
            save_preset_checkpoint(model_args.preset, partial, seed=0)
            try:
                partial.rename(path)
            except OSError:  # another process finished first; its copy is identical (seed 0)
                shutil.rmtree(partial, ignore_errors=True)
    loaded = load_checkpoint(path)
    return loaded.model.train(), loaded.processor


def resume_point(model_args: ModelArguments, output_dir: str) -> str | None:
    """The last ``checkpoint-N`` of ``output_dir`` when resuming (None when there is none)."""
    if not model_args.resume or not Path(output_dir).is_dir():
        return None
    last = get_last_checkpoint(output_dir)
    if last is None:
        log.warning("resume requested but %s holds no checkpoint-N; starting from scratch",
                    output_dir)
    return last


def run(stage: str, model_args: ModelArguments, data_cfg: DataConfig,
        train_args: LensStage1Config | LensGRPOConfig):
    """Train ``stage`` ("stage1" or "grpo"); returns the trainer after training.

    Writes ``output_dir/checkpoint-N`` during training (LENS checkpoints + trainer state), the
    final model to ``output_dir/final``, ``metrics.jsonl``/``metrics.csv`` and ``summary.json``
    (steps, skipped records by reason).
    """
    torch.manual_seed(train_args.seed)
    # the main process writes the preset's ``init`` and any toy data first; the other ranks wait
    # at a barrier and then read what it wrote
    with train_args.main_process_first(local=True, desc="starting model and data"):
        model, processor = load_start_model(model_args, train_args.output_dir)
        items, skips = build_items(data_cfg, train_args.output_dir)
    if stage == "stage1":
        from lens_ros.training.stage1 import LensStage1Trainer

        trainer = LensStage1Trainer(model, train_args, items, processor)
    elif stage == "grpo":
        from lens_ros.training.batching import GrpoRows
        from lens_ros.training.grpo import LensGRPOTrainer

        rows = GrpoRows(items, processor, train_args.reasoning_prompt)
        trainer = LensGRPOTrainer(model, train_args, rows.as_hf_dataset(), processor,
                                  row_source=rows)
    else:
        raise ValueError(f"unknown stage {stage!r}; use 'stage1' or 'grpo'")
    trainer.train(resume_from_checkpoint=resume_point(model_args, train_args.output_dir))
    trainer.save_model(str(Path(train_args.output_dir) / "final"))
    if trainer.accelerator.is_main_process:
        summary = {"stage": stage, "global_step": trainer.state.global_step,
                   "items": len(items), "skipped_records": skips.as_dict()}
        (Path(train_args.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return trainer


def export_llm(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the Qwen2.5-VL part of a LENS checkpoint as a plain Qwen2.5-VL model directory
    (transformers layout + processor), e.g. for vLLM rollouts (``vllm_model_path``)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from lens_ros.model.build import load_checkpoint
    from lens_ros.training.grpo import reference_model

    loaded = load_checkpoint(checkpoint)
    llm: Qwen2_5_VLForConditionalGeneration = reference_model(loaded.model)
    llm.config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    out = Path(out)
    llm.save_pretrained(out)
    loaded.processor.save_pretrained(out)
    stock_processor_config(out)
    return out


def stock_processor_config(directory: str | Path) -> Path:
    """Make ``processor_config.json`` name transformers' own ``Qwen2_5_VLProcessor`` (not the
    project's image-only subclass) and carry the video processor section it requires, so that
    ``AutoProcessor.from_pretrained`` in any environment (vLLM's included) loads the folder as it
    loads a hub Qwen2.5-VL release. The video settings copy the image processor's (Qwen2.5-VL
    uses the same patching for both). Loading the video processor needs torchvision, as for a
    hub release."""
    file = Path(directory) / "processor_config.json"
    data = json.loads(file.read_text())
    data["processor_class"] = "Qwen2_5_VLProcessor"
    image = dict(data.get("image_processor") or {})
    if image and "video_processor" not in data:
        video = {k: v for k, v in image.items() if k != "image_processor_type"}
        video["video_processor_type"] = "Qwen2VLVideoProcessor"
        video["processor_class"] = "Qwen2_5_VLProcessor"
        data["video_processor"] = video
    file.write_text(json.dumps(data, indent=2) + "\n")
    return file
