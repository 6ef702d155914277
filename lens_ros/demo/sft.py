"""Warm-up supervised stage of the demo recipe (``python -m lens_ros.demo.train sft``): teacher-forced cross-entropy
on the answer and reasoning, plus an auxiliary dense loss on the merged visual tokens, with an
easy-pool curriculum (docs/demo.md). The paper starts from an instruction-tuned Qwen; our
from-scratch model must first learn the format, the reasoning and grounding here.

Trains the language model and the vision tower (the LENS head and SAM are untouched); the aux
head is dropped at export. Writes ``metrics.jsonl``, ``plots/``, ``last/`` and ``best/``
(by held-out box accuracy) checkpoints to ``output_dir``; stops at ``steps`` or ``max_minutes``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lens_ros.demo.pool import load_pool
from lens_ros.demo.samples import (COLOUR_NAMES, SIZE_NAMES, collate, make_sample,
                                             token_grid)
from lens_ros.demo.stage_loop import (StageRunConfig, optimizer_step, progress, run_steps,
                                     start_run, to_device)
from lens_ros.synthetic.vocabulary import SHAPES

log = logging.getLogger(__name__)


@dataclass
class SFTConfig(StageRunConfig):
    """Settings of ``python -m lens_ros.demo.train sft`` (YAML keys = field names)."""

    output_dir: str = "runs/demo/sft"  #: run folder (metrics, plots, checkpoints)
    normal_pool: str = "normal"  #: pool of 2-5-object scenes
    easy_pool: str = "easy"  #: pool of 1-3-object scenes (curriculum)
    easy_fraction: float = 0.3  #: the first this share of the run draws only easy scenes
    easy_share_after: float = 0.2  #: afterwards, this share of each batch stays easy
    dense_fraction: float = 0.5  #: share of "list the objects" samples in a batch
    listing: bool = False  #: grounding thinks list every object with its box first (experiment;
    #: ``lens_ros.demo.samples.grounding_reasoning``)
    aux_weight: float = 1.0  #: weight of the dense visual-token loss (0 = off)
    coord_weight: float = 1.0  #: cross-entropy weight of the coordinate tokens (others 1)
    steps: int = 6000  #: optimizer steps (the cosine schedule spans them)
    betas: list = field(default_factory=lambda: [0.9, 0.98])  #: AdamW betas


class AuxHead(nn.Module):
    """Linear head on the merged visual tokens: objectness, colour, shape, size, box (dropped)."""

    def __init__(self, dim: int):
        super().__init__()
        self.sizes = [1, len(COLOUR_NAMES), len(SHAPES), len(SIZE_NAMES), 4]
        self.proj = nn.Linear(dim, sum(self.sizes))

    def loss(self, tokens: torch.Tensor, t: dict) -> torch.Tensor:
        """tokens (B, G*G, D); targets from :func:`lens_ros.demo.samples.aux_targets` (batched)."""
        obj, col, shp, siz, box = self.proj(tokens).split(self.sizes, dim=-1)
        loss = F.binary_cross_entropy_with_logits(obj[..., 0], t["obj"])
        has = t["obj"] > 0
        if has.any():
            loss = loss + F.cross_entropy(col[has], t["colour"][has])
            loss = loss + F.cross_entropy(shp[has], t["shape"][has])
            loss = loss + F.cross_entropy(siz[has], t["size"][has])
            loss = loss + 5.0 * F.l1_loss(torch.sigmoid(box[has]), t["box"][has])
        return loss


def token_weights(tokenizer, coord_weight: float) -> torch.Tensor | None:
    """Per-vocabulary-id loss weights: ``coord_weight`` for the coordinate tokens (integers,
    with or without a leading space), 1 elsewhere; None when ``coord_weight`` is 1."""
    if coord_weight == 1.0:
        return None
    vocab = tokenizer.get_vocab()
    w = torch.ones(max(vocab.values()) + 1)
    for token, idx in vocab.items():
        if token.strip().isdigit():
            w[idx] = coord_weight
    return w


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor,
                weights: torch.Tensor | None) -> torch.Tensor:
    """Next-token cross-entropy, (B, L, V) logits vs (B, L) labels (-100 ignored), averaged
    with per-target ``weights`` (V,) so the mean is over the weighted tokens."""
    flat = logits.reshape(-1, logits.shape[-1])
    target = labels.reshape(-1)
    if weights is None:
        return F.cross_entropy(flat, target, ignore_index=-100)
    keep = target != -100
    per = F.cross_entropy(flat[keep], target[keep], reduction="none")
    w = weights.to(per.device)[target[keep]]
    return (per * w).sum() / w.sum()


def run_sft(cfg: SFTConfig) -> Path | None:
    """Train; returns the best checkpoint directory (None when stopped by ``stop_after_steps``:
    rerun to continue)."""
    rng, out, model, processor, inference = start_run(cfg, "sft")
    device = model.device
    tok = processor.tokenizer
    pools = {"normal": load_pool(cfg.pool_dir, cfg.normal_pool),
             "easy": load_pool(cfg.pool_dir, cfg.easy_pool)}
    for name, p in model.named_parameters():  # LM + vision tower only
        p.requires_grad = name.startswith(("model.", "lm_head"))
    aux = AuxHead(model.lens_config.hidden_size).to(device)
    params = [p for p in model.parameters() if p.requires_grad] + list(aux.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas),
                            weight_decay=cfg.weight_decay)
    ce_weights = token_weights(tok, cfg.coord_weight)
    grid = token_grid(model, int(pools["normal"].images.shape[1]))

    def train_step(step: int, minutes: float) -> dict:
        easy_share = (1.0 if progress(step, minutes, cfg) < cfg.easy_fraction
                      else cfg.easy_share_after)
        samples = []
        for _ in range(cfg.batch_size):
            pool = pools["easy" if rng.random() < easy_share else "normal"]
            samples.append(make_sample(pool, int(rng.integers(len(pool))), int(rng.integers(4)),
                                       rng.random() < cfg.dense_fraction, grid, cfg.listing))
        opt.zero_grad(set_to_none=True)
        b = to_device(collate(samples, tok, processor, with_aux=cfg.aux_weight > 0), device)
        vis = model.model.get_image_features(b["pixel_values"], b["image_grid_thw"],
                                             return_dict=True)
        res = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                    mm_token_type_ids=b["mm_token_type_ids"], image_grid_thw=b["image_grid_thw"],
                    mm_encoder_outputs={"image": vis}, use_cache=False)
        logits = res.logits[:, :-1].float()
        ce = weighted_ce(logits, b["labels"][:, 1:], ce_weights)
        loss, aux_loss = ce, torch.zeros(())
        if cfg.aux_weight > 0:
            aux_loss = aux.loss(torch.stack(list(vis.pooler_output)), b["aux"])
            loss = loss + cfg.aux_weight * aux_loss
        loss.backward()
        ce_v, aux_v = float(ce.detach()), float(aux_loss.detach())
        lr, gn = optimizer_step(opt, params, step, minutes, cfg)
        return {"loss": ce_v + cfg.aux_weight * aux_v, "ce": ce_v, "aux": aux_v,
                "learning_rate": lr, "grad_norm": gn, "easy_share": easy_share}

    return run_steps(cfg, out, {"model": model, "aux": aux}, opt, rng, train_step,
                     (model, processor, inference))
