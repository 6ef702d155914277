"""Train the tracking head (SAM 2's video parts) on synthetic moving-object sequences.

LENS checkpoints carry no memory modules, and Meta's SAM 2 weights do not fit the demo model's
small SAM 2, so the demo model's tracker is trained: the LENS model stays frozen (its SAM 2 image encoder only
provides features); the head (memory attention, memory encoder, temporal encodings, object
pointers and its own copy of the mask decoder, initialised from the LENS decoder) learns as in
SAM 2's video training, on short clips: the first frame is conditioned on the ground-truth mask,
the next ``clip_len - 1`` frames are tracked from memory (gradients flow through the memory),
and each tracked frame gets SAM 2's loss: 20 x focal + dice on the best of the three masks,
MSE of the predicted IoUs, BCE of the object score. Some clips cut to another sequence halfway
(the target vanishes) so that the object score learns "gone".

    python -m lens_ros.demo.tracker_training --model models/lens-demo --out models/lens-demo \
        --minutes 30
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lens_ros.model.build import load_model
from lens_ros.model.sam import track_frame
from lens_ros.model.tracking.memory import FrameFeatures, Tracker
from lens_ros.model.tracking.weights import (encoder_fingerprint, head_sam_config,
                                             init_tracking_head, load_tracking_head,
                                             save_tracking_head)
from lens_ros.synthetic import SceneConfig, make_sequence, scene_seed
from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE

#: sequences for training come from here on in the train seed range (scenes use the start)
TRAIN_SEQUENCE_OFFSET = 9_000_000


@dataclass
class TrackerTrainConfig:
    """Tracker training settings (SAM 2's loss weights; small CPU-sized clips)."""

    minutes: float = 30.0  #: wall-clock budget of the optimisation loop
    max_steps: int = 100_000  #: hard step limit (the budget usually ends the run first)
    clip_len: int = 6  #: frames per clip: 1 conditioning + clip_len - 1 tracked
    batch_size: int = 4  #: clips per step
    max_stride: int = 3  #: frames skipped between clip frames are drawn from 1..max_stride
    lr: float = 3e-4  #: AdamW peak learning rate (memory modules from scratch)
    decoder_lr_scale: float = 0.3  #: the copied decoder/prompt encoder learn at lr x this
    weight_decay: float = 0.01  #: AdamW weight decay
    warmup_steps: int = 50  #: linear warm-up, then cosine to 10 %
    grad_clip: float = 1.0  #: gradient-norm clip
    vanish_prob: float = 0.15  #: share of clips that switch to another scene halfway
    pool_sequences: int = 200  #: training sequences generated (and encoded) up front
    pool_frames: int = 16  #: frames per training sequence
    #: frame sizes WxH the training sequences cycle through (the demo model's input side
    #: DEMO_IMAGE_SIZE; the demo bag's, twice that; SAM squashes every frame to its own size)
    sizes: str = (f"{DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE},"
                  f"{2 * DEMO_IMAGE_SIZE}x{2 * DEMO_IMAGE_SIZE},160x120")
    memory_layers: int = 0  #: memory-attention layers of a new head (0: the model config's)
    memory_ff: int = 0  #: memory-attention MLP width of a new head (0: the model config's)
    eval_sequences: int = 16  #: held-out sequences (test-split seeds) for the final figure
    eval_frames: int = 20  #: frames per held-out sequence
    seed: int = 0  #: torch / numpy seed; picks the training sequences (new one per --init)


def scene_configs(sizes: str) -> list[SceneConfig]:
    """SceneConfigs of a "WxH,WxH" list."""
    out = []
    for item in sizes.split(","):
        w, _, h = item.strip().partition("x")
        out.append(SceneConfig(width=int(w), height=int(h)))
    return out


def make_pool(n: int, frames: int, configs: list[SceneConfig], seeds, log=print):
    """``n`` sequences as (rgb (T,H,W,3) uint8, masks (T,H,W) bool) pairs, one per seed, the
    scene configs taken in turn."""
    pool, t0 = [], time.perf_counter()
    for seed in seeds:
        if len(pool) == n:
            break
        rng = np.random.default_rng(seed)
        try:
            seq = make_sequence(rng, frames, configs[len(pool) % len(configs)],
                                level="attribute",
                                n_moving_distractors=int(rng.integers(0, 3)),
                                speed=(0.03, 0.12))
        except ValueError:  # no valid layout for this seed: take the next one
            continue
        pool.append((np.stack([f.rgb for f in seq.frames]), np.stack(seq.masks)))
        if len(pool) % 50 == 0:
            log(f"pool {len(pool)}/{n} ({time.perf_counter() - t0:.0f} s)")
    return pool


class FeaturePool:
    """Frozen-encoder features of every pool frame, computed once (float16 to halve memory).

    ``levels[l]`` is (HW_l, N, C) over all frames of all sequences (the layout SAM2Base
    takes); ``start[i]`` is the first row of sequence ``i``; ``pos`` the per-level position
    encodings (the same for every frame); ``cond`` (N, S, S) the ground truth at the SAM input
    size as ``add_new_mask`` makes it, ``low`` (N, S/4, S/4) at the mask decoder's output size.
    """

    def __init__(self, tracker: Tracker, pool) -> None:
        self.start = np.cumsum([0] + [len(rgb) for rgb, _ in pool])[:-1]
        self.lengths = np.array([len(rgb) for rgb, _ in pool])
        size = tracker.head.image_size
        levels, cond, low = [], [], []
        with torch.no_grad():
            for rgb, masks in pool:
                fs = [tracker.encode_frame(f) for f in rgb]
                self.pos, self.sizes = fs[0].pos, fs[0].sizes
                levels.append([torch.cat([f.feats[lv] for f in fs], 1).half()
                               for lv in range(len(self.sizes))])
                m = torch.from_numpy(masks).float()[:, None]
                cond.append(F.interpolate(m, size=(size, size), mode="bilinear",
                                          antialias=True)[:, 0] >= 0.5)
                low.append(F.interpolate(m, size=(size // 4, size // 4), mode="area")[:, 0] > 0.5)
        self.levels = [torch.cat([lv[i] for lv in levels], 1) for i in range(len(self.sizes))]
        self.cond, self.low = torch.cat(cond), torch.cat(low)

    def __len__(self) -> int:
        return len(self.start)

    def batch(self, rows: np.ndarray):
        """``FrameFeatures`` per clip step for rows (B, T) of frame indices -> list of T."""
        out = []
        for t in range(rows.shape[1]):
            r = torch.from_numpy(rows[:, t])
            feats = [lv[:, r].float() for lv in self.levels]
            pos = [p.expand(-1, len(r), -1) for p in self.pos]
            out.append(FrameFeatures(feats=feats, pos=pos, sizes=self.sizes))
        return out


def _clip_rows(pool: FeaturePool, rng: np.random.Generator, cfg: TrackerTrainConfig):
    """Frame rows (T,) of one clip and its GT presence; may cut to another sequence halfway."""
    i = int(rng.integers(len(pool)))
    n = int(pool.lengths[i])
    stride = int(rng.integers(1, max(1, min(cfg.max_stride, (n - 1) // (cfg.clip_len - 1))) + 1))
    span = (cfg.clip_len - 1) * stride + 1
    first = int(rng.integers(0, n - span + 1))
    rows = pool.start[i] + np.arange(first, first + span, stride)
    present = np.ones(cfg.clip_len, dtype=bool)
    if rng.random() < cfg.vanish_prob:
        cut = int(rng.integers(2, cfg.clip_len))
        j = int(rng.integers(len(pool)))
        rows[cut:] = pool.start[j] + rng.integers(0, pool.lengths[j], cfg.clip_len - cut)
        present[cut:] = False
    return rows, present


def _frame_loss(multi_logits, ious, obj_score, gt):
    """SAM 2's per-frame loss. multi_logits (B,3,h,w), ious (B,3), obj_score (B,1), gt (B,h,w)."""
    present = gt.flatten(1).any(1).float()  # (B,)
    target = gt[:, None].float().expand_as(multi_logits)
    prob = multi_logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(multi_logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    focal = ((0.25 * target + 0.75 * (1 - target)) * ce * (1 - p_t) ** 2).flatten(2).mean(-1)
    inter = (prob * target).flatten(2).sum(-1)
    dice = 1 - (2 * inter + 1) / (prob.flatten(2).sum(-1) + target.flatten(2).sum(-1) + 1)
    seg = 20 * focal + dice  # (B, 3)
    best = seg.argmin(1)
    rows = torch.arange(len(best))
    pred = (multi_logits > 0).float()
    true_iou = (pred * target).flatten(2).sum(-1) / (
        ((pred + target) > 0).float().flatten(2).sum(-1).clamp(min=1))
    iou_loss = F.mse_loss(ious, true_iou, reduction="none").mean(1)
    obj_loss = F.binary_cross_entropy_with_logits(obj_score[:, 0], present, reduction="none")
    return ((seg[rows, best] + iou_loss) * present + obj_loss).mean()


def clip_loss(tracker: Tracker, pool: FeaturePool, rows: np.ndarray,
              present: np.ndarray) -> torch.Tensor:
    """Mean loss over the tracked frames of a batch of clips: ``rows`` (B, T) pool frame
    indices, ``present`` (B, T) whether the clip's target is in the frame."""
    head = tracker.head
    feats = pool.batch(rows)
    r = torch.from_numpy(rows)
    cond = pool.cond[r[:, 0]][:, None].float().to(head.device)
    gt_low = pool.low[r] & torch.from_numpy(present)[:, :, None, None]
    bank = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    f0 = feats[0]
    out0 = head.track_step(0, True, f0.feats, f0.pos, f0.sizes, None, cond, bank, len(feats))
    bank["cond_frame_outputs"][0] = out0
    losses = []
    for t in range(1, len(feats)):
        f = feats[t]
        out, multi, ious, _, obj_score = track_frame(head, t, f.feats, f.pos, f.sizes, bank,
                                                     len(feats))
        bank["non_cond_frame_outputs"][t] = out
        losses.append(_frame_loss(multi, ious, obj_score, gt_low[:, t].to(head.device)))
    return torch.stack(losses).mean()


@torch.no_grad()
def evaluate(tracker: Tracker, sequences) -> float:
    """Mean over sequences of the mean IoU of frames 1.. when started from frame 0's GT mask."""
    was_training = tracker.head.training
    tracker.head.eval()
    scores = []
    for rgb, masks in sequences:
        tracker.start(rgb[0], masks[0])
        ious = []
        for frame, gt in zip(rgb[1:], masks[1:]):
            m = tracker.track(frame).mask
            union = (m | gt).sum()
            ious.append((m & gt).sum() / union if union else 1.0)
        scores.append(float(np.mean(ious)))
    tracker.reset()
    tracker.head.train(was_training)
    return float(np.mean(scores))


def train(model_dir: str, out_dir: str, cfg: TrackerTrainConfig, init: str | None = None,
          log=print) -> dict:
    """Train a tracking head for the LENS model in ``model_dir`` and save it to ``out_dir``;
    ``init``: continue from the head saved there (a run in several shorter sessions, or a
    head adapted to an updated image encoder)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = load_model(model_dir).requires_grad_(False)
    if init:  # no encoder check: adapting a head to an updated encoder is what this is for
        head, sam_cfg = load_tracking_head(init, model.lens_config.sam, model.device)
        tracker = Tracker(model, head)
    else:
        sizes = {"memory_attention_layers": cfg.memory_layers,
                 "memory_attention_ff": cfg.memory_ff}
        sam_cfg = head_sam_config(model.lens_config.sam, {k: v for k, v in sizes.items() if v})
        tracker = Tracker(model, init_tracking_head(model.sam, sam_cfg, cfg.seed))
    head = tracker.head
    scenes = scene_configs(cfg.sizes)
    first = TRAIN_SEQUENCE_OFFSET + cfg.seed * 100_000  # a continued run draws new sequences
    pool = FeaturePool(tracker, make_pool(cfg.pool_sequences, cfg.pool_frames, scenes,
                                          range(first, first + 100_000), log))
    log(f"pool features: {sum(lv.numel() for lv in pool.levels) * 2 / 1e9:.2f} GB")
    held_out = make_pool(cfg.eval_sequences, cfg.eval_frames, scenes,
                         (scene_seed("test", 399 - i) for i in range(400)), log)
    decoder = [p for n, p in head.named_parameters() if n.startswith(("sam_mask_decoder.",
                                                                       "sam_prompt_encoder."))]
    ids = {id(p) for p in decoder}
    rest = [p for p in head.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": rest, "lr": cfg.lr},
                             {"params": decoder, "lr": cfg.lr * cfg.decoder_lr_scale}],
                            weight_decay=cfg.weight_decay)
    base = [g["lr"] for g in opt.param_groups]
    before = evaluate(tracker, held_out)
    log(f"held-out mean IoU before training: {before:.3f}")
    head.train()
    t0, step, history = time.perf_counter(), 0, []
    budget = cfg.minutes * 60
    while step < cfg.max_steps and time.perf_counter() - t0 < budget:
        frac = min((time.perf_counter() - t0) / budget, 1.0)
        scale = (min(1.0, (step + 1) / cfg.warmup_steps)
                 * (0.1 + 0.45 * (1 + math.cos(math.pi * frac))))
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * scale
        clips = [_clip_rows(pool, rng, cfg) for _ in range(cfg.batch_size)]
        loss = clip_loss(tracker, pool, np.stack([c[0] for c in clips]),
                         np.stack([c[1] for c in clips]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        history.append(float(loss.detach()))
        if step % 25 == 0:
            log(f"step {step} loss {np.mean(history[-25:]):.4f} lr {scale * cfg.lr:.2e} "
                f"{time.perf_counter() - t0:.0f} s")
    after = evaluate(tracker, held_out)
    log(f"held-out mean IoU after {step} steps: {after:.3f} (before {before:.3f})")
    report = {"steps": step, "minutes": (time.perf_counter() - t0) / 60,
              "held_out_mean_iou_before": before, "held_out_mean_iou": after,
              "held_out": f"{cfg.eval_sequences} test-split sequences x {cfg.eval_frames} "
                          "frames, started from the frame-0 ground-truth mask",
              "config": asdict(cfg)}
    save_tracking_head(head, out_dir, sam_cfg, {
        "image_encoder_fingerprint": encoder_fingerprint(model.sam.image_encoder),
        "training": report}, dtype=torch.float16, int8_rows=True)
    return report


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lens_ros.demo.tracker_training",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="LENS checkpoint directory (frozen)")
    parser.add_argument("--out", required=True, help="directory for tracker.safetensors and "
                        "tracker_config.json (usually the model directory)")
    parser.add_argument("--init", help="continue from the tracking head in this directory")
    for f in TrackerTrainConfig.__dataclass_fields__.values():
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                            default=f.default, help=f"TrackerTrainConfig.{f.name} "
                            f"(default {f.default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(make_parser().parse_args(argv))
    model, out, init = args.pop("model"), args.pop("out"), args.pop("init")
    report = train(model, out, TrackerTrainConfig(**args), init=init)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
