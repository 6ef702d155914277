"""The supervised mask loss of both stages: BCE + Dice on mask logits at ground-truth resolution.

As the reference (``trainer_stage1.py:419-551``, ``sam_loss.py``): each sample's low-resolution
logits (SAM 2's 256x256 at 1024 px input) are bilinearly upsampled (``align_corners=False``)
straight to the ground-truth H x W; BCE-with-logits is averaged over the pixels; Dice is
``1 - (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)`` with ``p = sigmoid(logits)`` and
``smooth = 1``; both are averaged over the samples, then weighted (1:1 by default).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F


class MaskLoss(NamedTuple):
    """The weighted total and its two (unweighted) terms, each a scalar tensor."""

    total: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize mask logits to ``size`` (H, W), in float32.

    Arguments:
      logits (torch.Tensor): (h, w), (1, h, w) or (1, 1, h, w) logits of one mask.
      size (tuple): target (H, W) in pixels of the original image.
    Returns:
      torch.Tensor: (H, W) float32 logits.
    """
    x = logits.float().reshape(1, 1, logits.shape[-2], logits.shape[-1])
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear",
                          align_corners=False)
    return x[0, 0]


def sigmoid_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the pixels of one mask; both (H, W), target in {0, 1}."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="mean")


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of one mask: ``1 - (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)``.

    Arguments:
      logits (torch.Tensor): (H, W) mask logits.
      target (torch.Tensor): (H, W) ground truth, bool or {0, 1}.
      smooth (float): added to numerator and denominator (1 in the reference); keeps the loss
        defined when both masks are empty (then it is 0).
    """
    p = torch.sigmoid(logits).flatten()
    t = target.to(p.dtype).flatten()
    return 1.0 - (2.0 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def mask_loss(logits: Sequence[torch.Tensor], gt_masks: Sequence[torch.Tensor],
              bce_weight: float = 1.0, dice_weight: float = 1.0,
              smooth: float = 1.0) -> MaskLoss:
    """BCE + Dice over a batch of masks, each compared at its own ground-truth resolution.

    Arguments:
      logits: per sample, low-resolution mask logits (h, w) / (1, h, w) / (1, 1, h, w); a
        (B, 1, h, w) tensor works too.
      gt_masks: per sample, (H_i, W_i) bool ground truth at original image resolution.
      bce_weight, dice_weight (float): weights of the two terms (1:1 in the reference).
      smooth (float): Dice smoothing constant.
    Returns:
      MaskLoss: ``total = bce_weight * bce + dice_weight * dice``, with ``bce`` and ``dice`` each
      the mean over the batch. An empty batch gives zeros.
    """
    if len(logits) != len(gt_masks):
        raise ValueError(f"got {len(logits)} mask logits but {len(gt_masks)} ground-truth masks; "
                         "pass one ground-truth mask per predicted mask")
    if len(logits) == 0:
        zero = torch.zeros(())
        return MaskLoss(zero, zero, zero)
    bces, dices = [], []
    for lg, gt in zip(logits, gt_masks):
        gt = torch.as_tensor(gt, device=lg.device)
        up = upsample_logits(lg, tuple(gt.shape[-2:]))
        bces.append(sigmoid_bce(up, gt))
        dices.append(dice_loss(up, gt, smooth))
    bce = torch.stack(bces).mean()
    dice = torch.stack(dices).mean()
    return MaskLoss(bce_weight * bce + dice_weight * dice, bce, dice)
