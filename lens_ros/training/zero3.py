"""DeepSpeed ZeRO-3 and the LENS passes that read parameters outside their module's forward.

ZeRO-3 partitions every parameter across ranks and gathers a module's own parameters only while
that module's ``forward`` runs (pre/post-forward hooks). A parameter read directly by code that
is not its owner's forward stays partitioned there (an empty tensor) unless it is *persistent*,
i.e. kept whole on every rank. DeepSpeed makes a parameter persistent when its size is at most
``stage3_param_persistence_threshold`` (transformers fills "auto" with 10 x hidden size: 20 480
for the 3B model); the ``ds_persist`` attribute the reference sets on ``learnable_query`` before
the engine exists is reset by DeepSpeed's own conversion, so it is not relied on here.

LENS reads these parameters outside their owner's forward:

* ``learnable_query`` (root level, Q x D = 131 072 values for LENS-3B): the mask pass for the
  mask reward (``LensGRPOTrainer._predict_masks``) runs outside the engine's forward;
* SAM 2's root parameters (``no_mem_embed`` ...), read by ``encode_sam_image``;
* SAM 2's ``nn.Embedding`` weights (the mask decoder's ``iou_token``, ``mask_tokens``,
  ``obj_score_token``; the prompt encoder's ``no_mask_embed`` and point embeddings), read as
  ``.weight`` by the decoder and prompt encoder, never through their own forward.

Two measures, both no-ops without ZeRO-3:

* :func:`persist_out_of_forward_params` raises the engine's persistence threshold to the largest
  of them before the engine is built, so that they stay whole between steps (plus every smaller
  parameter, a few million values for LENS-3B); the rest of the model stays partitioned.
* the non-root ones are registered as DeepSpeed *external parameters* of the root module
  (:func:`register_external_params`): the policy pass runs inside the root's forward, so ZeRO-3
  gathers them for its forward and backward (gradients included);
* :func:`gathered` wraps the passes that run outside any forward (SAM feature encoding, the
  mask pass of the mask reward; no gradient): DeepSpeed makes persistent parameters whole only
  at its first forward/optimizer step, and every ``GatheredParameters`` block (TRL's generation
  uses one) re-partitions them on exit, so there they are gathered read-only with
  ``deepspeed.zero.GatheredParameters``.
"""
from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)

THRESHOLD_KEY = "stage3_param_persistence_threshold"


def out_of_forward_params(model: torch.nn.Module) -> dict[str, int]:
    """``{name: numel}`` of the parameters LENS reads outside their module's forward: the
    root-level ones (``learnable_query``), SAM 2's root-level ones (``no_mem_embed`` ...) and
    every ``nn.Embedding`` inside SAM 2 (the decoder's tokens, the prompt encoder's
    ``no_mask_embed`` and point embeddings: SAM 2 reads them as ``.weight``, never through their
    forward)."""
    embeddings = {f"{name}." for name, m in model.named_modules()
                  if name.startswith("sam.") and isinstance(m, torch.nn.Embedding)}
    out = {}
    for name, p in model.named_parameters():
        root_level = "." not in name
        sam_root = name.startswith("sam.") and name.count(".") == 1
        if root_level or sam_root or name.startswith(tuple(embeddings)):
            out[name] = p.numel()
    return out


def required_threshold(model: torch.nn.Module, hidden_size: int,
                       current: int | str | None = "auto") -> int:
    """The persistence threshold that keeps every out-of-forward parameter whole: the largest of
    ``current`` ("auto"/None = transformers' 10 x hidden size) and their sizes."""
    base = 10 * hidden_size if current in (None, "auto") else int(current)
    return max([base, *out_of_forward_params(model).values()])


def zero_stage(ds_config: dict) -> int:
    """The ZeRO stage of a DeepSpeed config dict (0 when absent)."""
    stage = (ds_config.get("zero_optimization") or {}).get("stage", 0)
    return int(stage) if stage != "auto" else 0


def apply_to_config(ds_config: dict, model: torch.nn.Module, hidden_size: int) -> int | None:
    """Set the ZeRO-3 persistence threshold of ``ds_config`` in place; returns it (None when the
    config is not ZeRO-3, which gathers nothing lazily)."""
    if zero_stage(ds_config) != 3:
        return None
    zero = ds_config.setdefault("zero_optimization", {})
    value = required_threshold(model, hidden_size, zero.get(THRESHOLD_KEY, "auto"))
    zero[THRESHOLD_KEY] = value
    return value


def persist_out_of_forward_params(trainer, model) -> int | None:
    """Apply :func:`apply_to_config` to a Trainer's DeepSpeed plugin config (both the plugin's
    dict and its ``hf_ds_config`` copy) before the engine is built at ``train()``; no-op
    without DeepSpeed. Returns the threshold set."""
    plugin = getattr(getattr(trainer, "accelerator", None), "state", None)
    plugin = getattr(plugin, "deepspeed_plugin", None)
    if plugin is None:
        return None
    hidden = int(model.lens_config.hidden_size)
    dicts = [plugin.deepspeed_config]
    hf = getattr(plugin, "hf_ds_config", None)
    if hf is not None and getattr(hf, "config", None) is not plugin.deepspeed_config:
        dicts.append(hf.config)
    value = None
    for cfg in dicts:
        value = apply_to_config(cfg, model, hidden)
    if value is not None:
        register_external_params(model)
        log.info("ZeRO-3: %s = %d so that %s stay whole on every rank", THRESHOLD_KEY, value,
                 sorted(out_of_forward_params(model)))
    return value


def register_external_params(model: torch.nn.Module) -> list[str]:
    """Register the out-of-forward parameters that are not the root module's own as DeepSpeed
    *external parameters* of the root module, so that ZeRO-3 gathers them (forward and
    backward) whenever the root's forward runs, as it gathers ``learnable_query``. Returns their
    names. Needs DeepSpeed; call before the engine is built."""
    import deepspeed

    names = []
    params = dict(model.named_parameters())
    for name in out_of_forward_params(model):
        if "." in name:  # root-level parameters are the root's own
            deepspeed.zero.register_external_parameter(model, params[name])
            names.append(name)
    return names


def _partitioned(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The out-of-forward parameters that ZeRO-3 currently holds partitioned (empty here)."""
    names = getattr(model, "_lens_out_of_forward", None)
    if names is None:
        names = frozenset(out_of_forward_params(model))
        model._lens_out_of_forward = names
    out = []
    for name, p in model.named_parameters():
        status = getattr(p, "ds_status", None)
        if name in names and status is not None and status.name != "AVAILABLE":
            out.append(p)
    return out


@contextlib.contextmanager
def gathered(model: torch.nn.Module):
    """Make the out-of-forward parameters whole for the duration of the block (ZeRO-3 only);
    without DeepSpeed, or when they are already whole, nothing happens."""
    params = _partitioned(model)
    if not params:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        yield
