"""Optional fast mask pass: reuse the generation KV cache and append only the 64 queries.

The faithful LENS mask pass (``LensModel.query_hidden_states``) runs the whole sequence again
(prompt with its image tokens + completion + 64 queries) with 1-D positions, because the head
was trained that way. With a KV cache from ``generate`` only the last
generated token and the 64 queries need a forward pass; but the cached keys were computed with
M-RoPE positions (3-D on the image tokens) and the queries then continue those positions, so
the query states and the mask **differ** from the faithful ones. How much is measured, not
assumed (``bench/bench_fast_path.py``, docs/track3d.md); ``InferenceConfig.fast_mask_pass``
(off by default) switches it on.

Positions of the appended tokens: Qwen's text continuation rule, ``number of attended tokens
before it + rope_delta`` on all three M-RoPE axes (what ``generate`` would give the next token),
so query ``j`` of a row gets ``n_valid + j + delta``. Pad ids (left padding of a batch, and the
pads that follow an early end-of-turn) are masked, as in the faithful pass.
"""
from __future__ import annotations

import torch

from lens_ros.model.modeling import LensModel


def cache_length(cache) -> int:
    """Tokens held by a transformers cache object."""
    return int(cache.get_seq_length())


@torch.inference_mode()
def fast_query_hidden(model: LensModel, sequences: torch.Tensor, cache, pad_token_id: int | None,
                      rope_deltas: torch.Tensor | None = None) -> torch.Tensor:
    """Query states from the generation cache.

    Arguments:
      model (LensModel): the model that generated ``sequences``.
      sequences (torch.Tensor): (B, L) prompt (left-padded) + generated ids, as ``generate``
        returns them; the cache holds the first ``cache_length(cache)`` positions (L - 1).
      cache: the ``DynamicCache`` of that generate call (it is extended in place: discard it
        afterwards).
      pad_token_id (int | None): pads are masked; None = no pads.
      rope_deltas (torch.Tensor | None): (B, 1) M-RoPE offsets of the batch; default
        ``model.model.rope_deltas`` as left by ``generate``.
    Returns:
      (B, Q, D) post-final-norm hidden states of the 64 queries (input of ``sam_prompt``).
    """
    b, total = sequences.shape
    past = cache_length(cache)
    if not 0 < past <= total:
        raise ValueError(f"the cache holds {past} positions but the sequence has {total}; "
                         "pass the cache of the generate call that produced these ids")
    deltas = rope_deltas if rope_deltas is not None else model.model.rope_deltas
    if deltas is None:
        raise ValueError("no rope_deltas: call right after model.generate, or pass them")
    valid = (sequences != pad_token_id).long() if pad_token_id is not None \
        else torch.ones_like(sequences)
    q = model.num_queries
    new_ids = sequences[:, past:]
    embed = model.get_input_embeddings()
    embeds = torch.cat([embed(new_ids), model.learnable_query.to(embed.weight.dtype)
                        .expand(b, -1, -1)], dim=1)
    mask = torch.cat([valid, valid.new_ones(b, q)], dim=1)
    # positions continue the text of each row: attended tokens before + offset, all 3 axes
    before = valid[:, :past].sum(-1, keepdim=True)
    steps = torch.cat([valid[:, past:], valid.new_ones(b, q)], dim=1).cumsum(-1) - 1
    pos = before + steps.clamp(min=0) + deltas.to(sequences.device).reshape(-1, 1)[:b]
    out = model.model.language_model(inputs_embeds=embeds, attention_mask=mask,
                                     position_ids=pos[None].expand(3, -1, -1), cache=cache,
                                     use_cache=True)
    return out.last_hidden_state[:, -q:]
