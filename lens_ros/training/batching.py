"""From :class:`TrainItem` to model inputs: GRPO dataset rows and teacher-forced stage-1 batches.

Frames: the LLM sees the image smart-resized (PIL bicubic, as LENS' demo) to (H', W'), so the
box in a prompt, an answer or a reward ``solution`` is in (H', W') pixels; SAM sees the image
squashed to S x S; masks and ``gt_box`` stay in the original (H, W) pixels.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from lens_ros.model.config import LensConfig
from lens_ros.model.processing import (encode_prompts, prepare_llm_image, prepare_sam_image,
                                       processor_pixel_bounds, smart_resize)
from lens_ros.model.prompts import build_messages, render_prompt
from lens_ros.data.items import TrainItem, scale_box

#: Stage-1 teacher-forced answer (``trainer_stage1.py:380-418``): Qwen2-VL grounding syntax
#: with the ground-truth box in LLM-image pixels; ``{question}`` is the raw expression.
REFERENCE_ANSWER_TEMPLATE = ("<|object_ref_start|>{question}.<|object_ref_end|>"
                             "<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>")


def llm_size(image_hw: tuple[int, int], processor, factor: int = 28) -> tuple[int, int]:
    """(H', W') the LLM sees for an image of size (H, W) with this processor's pixel bounds."""
    lo, hi = processor_pixel_bounds(processor)
    return smart_resize(int(image_hw[0]), int(image_hw[1]), factor, lo, hi)


def llm_pil_image(rgb: np.ndarray, processor, factor: int = 28) -> Image.Image:
    """The smart-resized LLM image as PIL (the processor's own resize is then a no-op)."""
    h, w = llm_size(rgb.shape[:2], processor, factor)
    return Image.fromarray(rgb).resize((w, h), Image.BICUBIC)


def sam_pixels(rgb: np.ndarray, cfg: LensConfig) -> torch.Tensor:
    """(1, 3, S, S) float32 SAM input of one original image."""
    return prepare_sam_image(rgb, cfg.sam.image_size, cfg.processing.sam_pixel_mean,
                             cfg.processing.sam_pixel_std)


def grpo_row(item: TrainItem, processor, reasoning: bool = False) -> dict[str, Any]:
    """One TRL GRPO dataset row for ``item``.

    Returns a dict with
      ``prompt``: LENS' chat messages (system string, user [image, question text]);
      ``image``: the smart-resized PIL image TRL puts in the ``{"type": "image"}`` slot;
      ``solution``: the ground-truth XYXY box in LLM-image pixels, rounded as the reference;
      ``gt_mask``: HxW bool ground truth (original resolution);
      ``rgb``: the original HxWx3 uint8 image (for SAM);
      ``row_id``, ``source``: identifiers (``row_id`` groups the G rollouts of one prompt).
    """
    pil = llm_pil_image(item.image, processor)
    resized_hw = (pil.height, pil.width)
    return {"prompt": build_messages(item.question, reasoning), "image": pil,
            "solution": scale_box(item.gt_box, item.image.shape[:2], resized_hw),
            "gt_mask": item.gt_mask, "rgb": item.image, "row_id": item.id,
            "source": item.source}


class GrpoRows:
    """Lazy TRL rows over an item dataset, with a small cache.

    TRL's sampler asks for each prompt G times in a row; the cache decodes it once.
    """

    def __init__(self, items, processor, reasoning: bool = False, cache_size: int = 8):
        self.items, self.processor, self.reasoning = items, processor, reasoning
        self.cache_size = cache_size
        self._cache: dict[int, dict] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        with self._lock:
            row = self._cache.get(i)
        if row is None:
            row = grpo_row(self.items[i], self.processor, self.reasoning)
            with self._lock:
                if len(self._cache) >= self.cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[i] = row
        return dict(row)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the items (new sentence draws) and drop the cache."""
        if hasattr(self.items, "set_epoch"):
            self.items.set_epoch(epoch)
        with self._lock:
            self._cache.clear()

    def as_hf_dataset(self):
        """A ``datasets.Dataset`` of indices whose rows are built on access (TRL needs one)."""
        import datasets

        ds = datasets.Dataset.from_dict({"index": list(range(len(self)))})

        def transform(batch: dict[str, list]) -> dict[str, list]:
            rows = [self[i] for i in batch["index"]]
            return {k: [r[k] for r in rows] for k in rows[0]}

        return ds.with_transform(transform)


def teacher_forced_batch(items: Sequence[TrainItem], processor, cfg: LensConfig,
                         answer_template: str = REFERENCE_ANSWER_TEMPLATE,
                         reasoning: bool = False) -> dict[str, Any]:
    """Stage-1 inputs: prompt + ground-truth answer + ``<|im_end|>``, left-padded.

    As the reference: the chat-templated prompt (generation prompt added) followed by the
    answer as the assistant turn, ending in ``<|im_end|>`` (the template's final newline dropped).
    Returns
      ``input_ids`` (B, L) int64, ``attention_mask`` (B, L) int64, ``pixel_values`` (N, C)
      float32, ``image_grid_thw`` (B, 3) int64, ``sam_pixels`` (B, 3, S, S) float32 and
      ``gt_masks``: list of (H_i, W_i) bool tensors.
    """
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    ids, pixel_values, grids = [], [], []
    for item in items:
        llm = prepare_llm_image(item.image, processor, cfg.processing.patch_factor)
        x1, y1, x2, y2 = (int(v) for v in scale_box(item.gt_box, item.image.shape[:2],
                                                    llm.resized_hw))
        answer = answer_template.format(question=item.question, x1=x1, y1=y1, x2=x2, y2=y2)
        text = render_prompt(item.question, reasoning) + answer + "<|im_end|>"
        enc = encode_prompts(tok, [text], llm.num_tokens, image_id)
        ids.append(enc["input_ids"][0])
        pixel_values.append(llm.pixel_values)
        grids.append(llm.image_grid_thw)
    width = max(len(x) for x in ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):  # left padding, as the reference
        input_ids[row, width - len(x):] = x
        attention_mask[row, width - len(x):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "pixel_values": torch.cat(pixel_values), "image_grid_thw": torch.cat(grids),
            "sam_pixels": torch.cat([sam_pixels(it.image, cfg) for it in items]),
            "gt_masks": [torch.from_numpy(np.ascontiguousarray(it.gt_mask)) for it in items]}
