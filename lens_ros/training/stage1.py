"""Stage 1: align the LENS head to a frozen LLM with the mask loss on teacher-forced answers.

As the reference (``trainer_stage1.py``): the language model and its
vision tower are frozen; ``learnable_query``, ``connector``, ``conv_1d`` and ``proj_to_sam``
(and, optionally, the SAM 2 mask decoder) train. Each sample is the chat prompt followed by the
ground-truth answer (``<|object_ref_start|>q.<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)
<|box_end|><|im_end|>``, box in LLM-image pixels); one pass with the 64 queries and 1-D
positions gives the mask logits; the loss is BCE + Dice at ground-truth resolution. The SAM
image encoder is frozen and its features are computed without gradient.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset
from transformers import Trainer

from lens_ros.model.modeling import LensModel
from lens_ros.training.batching import teacher_forced_batch
from lens_ros.training.common import (EpochCallback, LensCheckpointMixin, MetricsFileCallback,
                                      configure_trainable)
from lens_ros.training.configs import LensStage1Config
from lens_ros.training.lens_pass import LensPassRequest, install_lens_forward
from lens_ros.training.losses import mask_loss
from lens_ros.training.zero3 import gathered, persist_out_of_forward_params


def collate_items(items: list) -> list:
    """Batches stay lists of TrainItems; the trainer builds tensors (one image per item)."""
    return list(items)


class ItemTorchDataset(Dataset):
    """A torch ``Dataset`` view of an item source (``set_epoch`` forwarded)."""

    def __init__(self, items):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.items, "set_epoch"):
            self.items.set_epoch(epoch)


class LensStage1Trainer(LensCheckpointMixin, Trainer):
    """``transformers.Trainer`` for stage 1 (see module docstring).

    Arguments:
      model (LensModel): model to align (LLM weights stay as they are).
      args (LensStage1Config): configuration.
      train_dataset: map-style source of TrainItems (e.g. ``configs.build_items``).
      processing_class: the checkpoint's ImageOnlyQwen2_5_VLProcessor.
    """

    loss_is_scaled_for_ga = False  # compute_loss returns the micro-batch mean; Trainer scales it

    def __init__(self, model: LensModel, args: LensStage1Config, train_dataset,
                 processing_class, callbacks=None):
        if not isinstance(model, LensModel):
            raise TypeError(f"LensStage1Trainer trains a LensModel, got {type(model).__name__}")
        configure_trainable(model, train_llm=False, train_vision=False, train_head=True,
                            train_sam_decoder=args.train_sam_decoder)
        install_lens_forward(model)
        data = ItemTorchDataset(train_dataset)
        callbacks = list(callbacks or []) + [MetricsFileCallback(args.output_dir),
                                             EpochCallback(data)]
        super().__init__(model=model, args=args, train_dataset=data,
                         data_collator=collate_items, processing_class=processing_class,
                         callbacks=callbacks)
        self.lens_model = model
        persist_out_of_forward_params(self, model)  # SAM features are encoded outside forward
        self._metric_sums: dict[str, list[float]] = {}

    def _prepare_inputs(self, inputs):
        return inputs  # a list of TrainItems; tensors are built in compute_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        lens = self.lens_model
        batch = teacher_forced_batch(inputs, self.processing_class, lens.lens_config,
                                     self.args.answer_template, self.args.reasoning_prompt)
        device = self.accelerator.device
        with torch.no_grad():  # frozen SAM image encoder
            with gathered(lens):  # ZeRO-3: outside the engine's forward
                feats = lens.encode_sam_image(batch["sam_pixels"].to(device))
        request = LensPassRequest("1d", 1.0, feats)
        low_res = model(input_ids=batch["input_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device),
                        pixel_values=batch["pixel_values"].to(device),
                        image_grid_thw=batch["image_grid_thw"].to(device), lens=request)
        gt = [m.to(device) for m in batch["gt_masks"]]
        ml = mask_loss(list(low_res), gt, self.args.bce_loss_weight, self.args.dice_loss_weight)
        for name, value in (("mask_bce", ml.bce), ("mask_dice", ml.dice)):
            self._metric_sums.setdefault(name, []).append(
                self.accelerator.gather(value.detach().reshape(1)).mean().item())
        return (ml.total, low_res) if return_outputs else ml.total

    def log(self, logs: dict, start_time: float | None = None) -> None:
        for name, values in self._metric_sums.items():
            if values:
                logs[name] = sum(values) / len(values)
        self._metric_sums = {}
        super().log(logs, start_time)
