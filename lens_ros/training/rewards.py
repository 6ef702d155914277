"""GRPO rewards as plain functions ``(completions, **columns) -> list[float]`` (TRL's contract).

``completions`` holds one entry per rollout, either a string or TRL's conversational form
``[{"role": "assistant", "content": "..."}]``. Dataset columns arrive as keyword lists with one
value per rollout (TRL repeats each prompt's row ``num_generations`` times). Each function is
pure: no model, no I/O, so each is unit-tested on hand-made cases. TRL logs each one separately
(``rewards/<function name>/mean``).

The released RefCOCO stage-2 run rewards ``box_iou_reward + mask_iou_reward`` (range [0, 2]);
its chain-of-thought runs add ``think_format_reward``.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from lens_ros.evaluation.metrics import box_iou, intersection_union
from lens_ros.model.answers import parse_answer

#: The reference's format check (``rewards.py:33-36``): anchored at the start, not at the end.
THINK_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The generated text of one completion, plain or conversational (last message content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else ""
        if isinstance(content, list):  # content blocks
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return ""


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two HxW bool masks; 0.0 when both are empty (the reference's I / (U + 1e-6)).

    Raises ValueError when the shapes differ (upsample the prediction to the GT size first).
    """
    inter, union = intersection_union(np.asarray(pred, dtype=bool), np.asarray(gt, dtype=np.uint8))
    return inter / union if union else 0.0


def think_format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 if the text starts with ``<think>...</think>`` followed by ``<answer>...</answer>``.

    >>> think_format_reward(["<think>left</think> <answer>[1, 2, 3, 4]</answer>", "[1,2,3,4]"])
    [1.0, 0.0]
    """
    return [1.0 if THINK_FORMAT.match(completion_text(c)) else 0.0 for c in completions]


def box_iou_reward(completions: list, solution: list, **kwargs) -> list[float]:
    """IoU² of the box parsed from each completion with the ground-truth box.

    ``box_iou`` is the evaluator's (no +1 convention, an inverted box has zero area, an empty
    union gives 0.0 where the reference divides by zero). The box is parsed as at inference
    (:func:`lens_ros.model.answers.parse_answer`: inside ``<answer>`` when present, never from
    ``<think>``), so the reward scores what the robot gets.

    Arguments:
      completions: generated texts (see module docstring).
      solution: per rollout, the ground-truth XYXY box in pixels of the smart-resized LLM image
        (the frame the model answers in).
    Returns:
      list[float]: IoU² in [0, 1]; 0.0 when no box can be parsed.

    >>> box_iou_reward(["<answer>[0, 0, 10, 10]</answer>", "none"], solution=[[0, 0, 10, 20]] * 2)
    [0.25, 0.0]
    """
    return [answer_box_iou(completion_text(c), gt) ** 2
            for c, gt in zip(completions, solution, strict=True)]


def answer_box_iou(text: str, gt) -> float:
    """IoU of the box in a generated ``text`` (parsed as at inference) with the ground-truth
    XYXY box ``gt``; 0.0 when no box can be parsed."""
    box = parse_answer(text).box
    return box_iou(box, gt) if box is not None else 0.0


def mask_iou_reward(completions: list, pred_mask: list, gt_mask: list, **kwargs) -> list[float]:
    """IoU² of each rollout's predicted mask with the ground-truth mask.

    Arguments:
      completions: generated texts (only their number is used).
      pred_mask: per rollout, HxW bool mask (logits > 0 at ground-truth resolution), filled in by
        :class:`lens_ros.training.grpo.LensGRPOTrainer` before the rewards are computed.
      gt_mask: per rollout, HxW bool ground truth.
    Returns:
      list[float]: IoU² in [0, 1].
    """
    if len(pred_mask) != len(completions):
        raise ValueError(f"{len(pred_mask)} predicted masks for {len(completions)} completions; "
                         "mask_iou_reward needs the trainer to add one pred_mask per rollout")
    return [mask_iou(p, g) ** 2 for p, g in zip(pred_mask, gt_mask, strict=True)]


#: Reward functions by the names used in configs (``reward_funcs: [box_iou, mask_iou]``).
REWARD_FUNCS = {
    "think_format": think_format_reward,
    "box_iou": box_iou_reward,
    "mask_iou": mask_iou_reward,
}
