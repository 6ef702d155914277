"""The fast mask pass (generation KV cache + 64 queries) on the tiny preset.

What is checked: the cache path computes exactly what a full, uncached pass over prompt +
completion + queries with generate's own M-RoPE positions computes (so the only difference from
the faithful LENS pass is the positions, by design); the switch is off by default; answers are
unchanged when it is on, for one command and for a batch. Agreement with the faithful mask is
measured by bench/bench_fast_path.py (with random weights it means nothing).
"""
import numpy as np
import pytest
import torch

from lens_ros.model import LensSegmenter
from lens_ros.model.fast_path import cache_length, fast_query_hidden
from lens_ros.model.generation import greedy_config
from lens_ros.model.processing import encode_prompts
from lens_ros.model.prompts import render_prompt
from lens_ros.model.segmenter import _repeat_vision


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir, bundled_image):
    seg = LensSegmenter.from_pretrained(tiny_model_dir)
    seg.set_image(bundled_image)
    return seg


def _generate(seg, texts):
    """generate() on the cached image, returning sequences, cache, rope deltas and inputs."""
    model, image = seg.model, seg._image
    enc = encode_prompts(seg.tokenizer, [render_prompt(t) for t in texts], image.llm.num_tokens,
                         model.config.image_token_id)
    grid = image.llm.image_grid_thw.expand(len(texts), -1)
    vision = _repeat_vision(image.vision, len(texts))
    cfg = greedy_config(model.generation_config, 12, None)
    cfg.return_dict_in_generate = True
    with torch.inference_mode():
        out = model.generate(**enc, image_grid_thw=grid, mm_encoder_outputs={"image": vision},
                             generation_config=cfg)
    return out.sequences, out.cache, model.model.rope_deltas.clone(), enc, grid, vision


@torch.inference_mode()
def _uncached_mrope_hidden(seg, seq, enc, grid, vision):
    """Reference: one pass without cache over prompt + completion + queries, M-RoPE positions
    from Qwen's own get_rope_index (the queries continue the text positions)."""
    model = seg.model
    b, q = seq.shape[0], model.num_queries
    pad = seg.tokenizer.pad_token_id
    ids = torch.cat([seq, seq.new_full((b, q), pad)], 1)
    mask = torch.cat([(seq != pad).long(), seq.new_ones(b, q)], 1)
    mm = torch.zeros_like(ids)
    mm[:, :enc["mm_token_type_ids"].shape[1]] = enc["mm_token_type_ids"]
    pos, _ = model.model.get_rope_index(ids, image_grid_thw=grid, attention_mask=mask,
                                        mm_token_type_ids=mm)
    embeds = model.get_input_embeddings()(seq)
    embeds = torch.cat([embeds, model.learnable_query.expand(b, -1, -1)], 1)
    out = model.model(input_ids=ids, inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                      mm_encoder_outputs={"image": vision}, use_cache=False)
    return out.last_hidden_state[:, -q:]


@pytest.mark.parametrize("texts", [["the red mug"], ["the red mug", "a small ball left of it"]])
def test_cache_path_equals_uncached_mrope_pass(segmenter, texts):
    seq, cache, deltas, enc, grid, vision = _generate(segmenter, texts)
    assert cache_length(cache) == seq.shape[1] - 1  # the last generated token is not cached
    reference = _uncached_mrope_hidden(segmenter, seq, enc, grid, vision)
    fast = fast_query_hidden(segmenter.model, seq, cache, segmenter.tokenizer.pad_token_id,
                             deltas)
    hidden = segmenter.model.lens_config.hidden_size
    assert fast.shape == reference.shape == (len(texts), 64, hidden)
    torch.testing.assert_close(fast, reference, atol=2e-4, rtol=1e-3)


def test_fast_path_is_not_the_faithful_pass(segmenter):
    """Sanity: the 1-D-position faithful states differ from the M-RoPE ones (why it is opt-in)."""
    seq, cache, deltas, enc, grid, vision = _generate(segmenter, ["the red mug"])
    pad = segmenter.tokenizer.pad_token_id
    with torch.inference_mode():
        faithful = segmenter.model.query_hidden_states(
            seq, (seq != pad).long(), image_grid_thw=grid, mm_encoder_outputs={"image": vision})
    fast = fast_query_hidden(segmenter.model, seq, cache, pad, deltas)
    assert (fast - faithful).abs().max() > 1e-3


def test_switch_off_by_default_and_answers_unchanged(tiny_model_dir, bundled_image):
    seg = LensSegmenter.from_pretrained(tiny_model_dir)
    assert seg.config.fast_mask_pass is False
    seg.set_image(bundled_image)
    faithful = seg.segment_batch(["the red mug", "the blue cube"])
    seg.configure(fast_mask_pass=True)
    fast = seg.segment_batch(["the red mug", "the blue cube"])
    single = seg.segment("the red mug")
    for f, g in zip(faithful, fast):
        assert g.answer == f.answer and g.status == f.status
        assert g.mask.shape == f.mask.shape == bundled_image.shape[:2]
        assert g.mask.dtype == bool and np.isfinite(g.score)
    assert single.answer == faithful[0].answer


def test_rejects_a_foreign_cache(segmenter):
    seq, cache, deltas, *_ = _generate(segmenter, ["the red mug"])
    longer = torch.cat([seq, seq], 1)
    with pytest.raises(ValueError, match="cache holds"):
        fast_query_hidden(segmenter.model, longer[:, :2], cache, 0, deltas)
