"""The policy pass of a LENS GRPO step: token log-probs and mask logits from ONE call of the
(possibly DDP-wrapped) model, so that every trainable parameter is reached through the wrapper's
forward (DDP then needs no unused-parameter search, which fails on gloo with 'marked as ready twice').

TRL computes log-probs with ``model(**inputs, labels=..., fused_lm_head=True)``. The trainer
installs :func:`install_lens_forward` on the LensModel, which leaves that call unchanged unless
a :class:`LensPassRequest` is passed as ``lens=...`` (:class:`CallWithLens` adds it). Then:

* ``positions="mrope"``: TRL's fused pass (3-D M-RoPE positions, as generation and the
  reference model) gives the log-probs; a second language-model pass with the 64 queries and
  1-D positions (as inference) gives the mask logits.
* ``positions="1d"``: one pass with the queries and 1-D positions gives both (the reference
  implementation's policy forward, ``trainer_stage2.py:495-556``).
* no ``labels`` (stage 1): only the query pass and the masks; returns the low-res logits.
"""
from __future__ import annotations

import functools
import types

import torch
from trl.trainer.utils import FusedCausalLMOutput, selective_log_softmax_and_entropy

from lens_ros.model.modeling import SamImageFeatures
from lens_ros.training.zero3 import gathered


class LensPassRequest:
    """What the patched forward should do for one call, and where it leaves the masks.

    Attributes:
      positions (str): "mrope" or "1d" (see module docstring).
      temperature (float): the sampling temperature log-probs are computed at.
      features (SamImageFeatures | None): per-row SAM image features; None = no mask pass.
      low_res_logits (torch.Tensor | None): (B, 1, h, w) mask logits, set by the forward.
      boxes (torch.Tensor | None): (B, 4) answer boxes in SAM pixels for ``box_prompt`` models.

    A plain class on purpose: DDP passes unknown objects through its kwargs untouched.
    """

    def __init__(self, positions: str, temperature: float,
                 features: SamImageFeatures | None = None):
        self.positions = positions
        self.temperature = temperature
        self.features = features
        self.low_res_logits: torch.Tensor | None = None
        self.boxes: torch.Tensor | None = None


class CallWithLens:
    """A callable standing in for the model in TRL's log-prob helper: adds ``lens=request``."""

    def __init__(self, model, request: LensPassRequest):
        self.model = model
        self.request = request

    def __call__(self, *args, **kwargs):
        return self.model(*args, lens=self.request, **kwargs)


def _masks(model, request: LensPassRequest, query_hidden: torch.Tensor) -> None:
    feats = request.features
    if feats is None:
        return
    if feats.image_embed.shape[0] != query_hidden.shape[0]:
        raise ValueError(f"{feats.image_embed.shape[0]} SAM feature rows for "
                         f"{query_hidden.shape[0]} sequences; the mask pass needs one per row")
    # training mode: single-mask output, never the stability fallback (as the reference)
    pred = model.decode_masks(model.sam_prompt(query_hidden), feats, multimask_fallback=False,
                              boxes=request.boxes)
    request.low_res_logits = pred.low_res_logits


def _one_pass_1d(model, request: LensPassRequest, kwargs: dict) -> FusedCausalLMOutput:
    ids, attn, labels = kwargs["input_ids"], kwargs["attention_mask"], kwargs["labels"]
    hidden, _ = model.query_forward(ids, attn, kwargs.get("pixel_values"),
                                    kwargs.get("image_grid_thw"))
    q = model.num_queries
    text = hidden[:, :ids.shape[1] - 1]  # position t predicts token t + 1
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(text[keep])
    logps, ent = selective_log_softmax_and_entropy(logits, target[keep],
                                                   temperature=request.temperature)
    log_probs = text.new_zeros(target.shape, dtype=logps.dtype).masked_scatter(keep, logps)
    entropy = text.new_zeros(target.shape, dtype=ent.dtype).masked_scatter(keep, ent)
    _masks(model, request, hidden[:, -q:])
    return FusedCausalLMOutput(loss=-logps.sum() / keep.sum().clamp(min=1), log_probs=log_probs,
                               entropy=entropy, label_mask=keep)


def install_lens_forward(model) -> None:
    """Wrap ``model.forward`` (a LensModel, TRL's fused head already installed) so that a call
    with ``lens=LensPassRequest(...)`` runs the LENS policy pass; other calls are unchanged."""
    if getattr(model, "_lens_forward_installed", False):
        return
    previous = model.forward

    @functools.wraps(type(model).forward)  # generate() validates kwargs against this signature
    def forward(self, *args, lens: LensPassRequest | None = None, **kwargs):
        if lens is None:
            return previous(*args, **kwargs)
        if args:
            raise TypeError("the LENS policy pass takes keyword arguments only")
        with gathered(self):  # ZeRO-3: the head reads parameters outside their modules
            return _lens_pass(self, previous, lens, kwargs)

    model.forward = types.MethodType(forward, model)
    model._lens_forward_installed = True


def _lens_pass(model, previous, lens: LensPassRequest, kwargs: dict):
    """The body of the patched forward for a call with ``lens=...`` (see the module docstring)."""
    if "labels" not in kwargs:  # masks only (stage 1): one query pass, 1-D positions
        hidden, _ = model.query_forward(kwargs["input_ids"], kwargs["attention_mask"],
                                        kwargs.get("pixel_values"), kwargs.get("image_grid_thw"))
        _masks(model, lens, hidden[:, -model.num_queries:])
        return lens.low_res_logits
    if lens.positions == "1d":
        return _one_pass_1d(model, lens, kwargs)
    out = previous(**kwargs)
    if lens.features is not None:
        q = model.query_hidden_states(kwargs["input_ids"], kwargs["attention_mask"],
                                      kwargs.get("pixel_values"), kwargs.get("image_grid_thw"))
        _masks(model, lens, q)
    return out
