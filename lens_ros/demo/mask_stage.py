"""Stage 1 of the demo recipe (``python -m lens_ros.demo.train mask``): train the LENS head (64 queries,
connector, conv_1d, proj_to_sam) and the whole small SAM 2 (random Hiera + decoder) on a frozen
language model, with the ground-truth answer teacher-forced (as stage 1 of the paper) and, for
``box_prompt`` models, the answer box (jittered by a few pixels, as a generated box would be)
given as SAM's two corner tokens. Loss: BCE + Dice (``losses.mask_loss``).

Writes ``metrics.jsonl``, ``plots/``, ``last/`` and ``best/`` (by held-out end-to-end cIoU).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from lens_ros.model.processing import prepare_sam_image
from lens_ros.demo.pool import load_pool
from lens_ros.demo.samples import collate, make_sample
from lens_ros.training.losses import mask_loss
from lens_ros.demo.stage_loop import (StageRunConfig, optimizer_step, run_steps, start_run,
                                     to_device)

log = logging.getLogger(__name__)


@dataclass
class MaskStageConfig(StageRunConfig):
    """Settings of ``python -m lens_ros.demo.train mask`` (YAML keys = field names)."""

    output_dir: str = "runs/demo/mask"  #: run folder
    init: str = "runs/demo/sft/best"  #: checkpoint of the supervised stage
    #: optional checkpoint whose LENS head + SAM weights replace ``init``'s (continue a mask
    #: stage trained on an earlier language model); "" = keep ``init``'s
    head_from: str = ""
    pool: str = "normal"  #: pool to draw scenes from
    listing: bool = False  #: the SFT model was trained with listing thinks (``SFTConfig.listing``)
    box_jitter: float = 2.0  #: std of the Gaussian noise (pixels) on the teacher box corners
    steps: int = 1500  #: optimizer steps (cosine over them)
    max_minutes: float = 10.0  #: time budget
    warmup_steps: int = 50  #: warm-up steps
    eval_every_minutes: float = 5.0  #: held-out evaluation period


def head_parameters(model) -> list:
    """Freeze the LM and vision tower; return the trainable head + SAM parameters."""
    out = []
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith(("model.", "lm_head"))
        if p.requires_grad:
            out.append(p)
    return out


def load_head(model, directory: str) -> None:
    """Copy every non-language-model weight (queries, connector, conv, projection, SAM) from
    checkpoint ``directory`` into ``model``."""
    from lens_ros.model.build import load_model

    other = load_model(directory, torch.device("cpu"), torch.float32)
    head = {k: v for k, v in other.state_dict().items()
            if not k.startswith(("model.", "lm_head"))}
    missing = model.load_state_dict(head, strict=False)
    if missing.unexpected_keys:
        raise ValueError(f"{directory}: unexpected head keys {missing.unexpected_keys[:5]}")


def run_mask_stage(cfg: MaskStageConfig) -> Path | None:
    """Train the head; returns the best checkpoint directory (None when stopped by
    ``stop_after_steps``: rerun to continue)."""
    rng, out, model, processor, inference = start_run(cfg, "mask")
    device = model.device
    lc = model.lens_config
    if cfg.head_from:
        load_head(model, cfg.head_from)
    pool = load_pool(cfg.pool_dir, cfg.pool)
    params = head_parameters(model)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    size = lc.sam.image_size

    def train_step(step: int, minutes: float) -> dict:
        samples = [make_sample(pool, int(rng.integers(len(pool))), int(rng.integers(4)), False,
                               listing=cfg.listing) for _ in range(cfg.batch_size)]
        b = to_device(collate(samples, processor.tokenizer, processor), device)
        with torch.no_grad():
            vis = model.model.get_image_features(b["pixel_values"], b["image_grid_thw"],
                                                 return_dict=True)
        hidden = model.query_hidden_states(b["input_ids"], b["attention_mask"],
                                           image_grid_thw=b["image_grid_thw"],
                                           mm_encoder_outputs={"image": vis})
        sam_px = torch.cat([prepare_sam_image(s.image, size, lc.processing.sam_pixel_mean,
                                              lc.processing.sam_pixel_std) for s in samples])
        feats = model.encode_sam_image(sam_px.to(device))
        boxes = None
        if lc.box_prompt:
            hw = samples[0].image.shape[:2]
            raw = torch.tensor([s.box for s in samples], dtype=torch.float32)
            raw = raw + torch.randn_like(raw) * cfg.box_jitter  # CPU RNG on every device
            scale = torch.tensor([size / hw[1], size / hw[0]] * 2)
            boxes = (raw * scale).to(device)
        pred = model.decode_masks(model.sam_prompt(hidden), feats, multimask_fallback=False,
                                  boxes=boxes)
        loss = mask_loss(list(pred.low_res_logits),
                         [torch.from_numpy(s.mask).to(device) for s in samples])
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        lr, gn = optimizer_step(opt, params, step, minutes, cfg)
        total = float(loss.total.detach())
        return {"loss": total, "mask_loss": total, "mask_bce": float(loss.bce.detach()),
                "mask_dice": float(loss.dice.detach()), "learning_rate": lr, "grad_norm": gn}

    return run_steps(cfg, out, {"model": model}, opt, rng, train_step,
                     (model, processor, inference), key="eval/ciou")
