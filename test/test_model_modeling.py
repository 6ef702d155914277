"""LensModel: the faithful mask pass (1-D positions, post-norm queries), SAM 2, key names."""
from pathlib import Path

import numpy as np
import pytest
import torch

from lens_ros.model.checkpoints import released_state_dict
from lens_ros.model.config import InferenceConfig, LensConfig
from lens_ros.model.modeling import position_ids_1d
from lens_ros.model.presets import build_lens, tiny_config
from lens_ros.model.processing import (build_processor, encode_prompts, prepare_llm_image,
                                       prepare_sam_image)
from lens_ros.model.prompts import render_prompt
from lens_ros.model.tokenizer import build_bpe_tokenizer

FIXTURE = Path(__file__).parent / "data" / "lens3b_state_dict_keys.txt"


@pytest.fixture(scope="module")
def tiny():
    """(model, inputs) for one prompt on a random 240x320 image."""
    model = build_lens("tiny", seed=0)
    processor = build_processor(build_bpe_tokenizer(), 3136, 112 * 112)
    rgb = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    llm = prepare_llm_image(rgb, processor)
    enc = encode_prompts(processor.tokenizer, [render_prompt("the red mug")], llm.num_tokens,
                         model.config.image_token_id)
    sam = prepare_sam_image(rgb, 256, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
    return model, dict(enc, pixel_values=llm.pixel_values, image_grid_thw=llm.image_grid_thw,
                       sam_pixels=sam)


def _embeds_with_queries(model, ids, pixel_values, grid):
    """Manual LENS input: embed, scatter vision features into image tokens, append queries."""
    emb = model.get_input_embeddings()(ids)
    feats = torch.cat(model.model.get_image_features(pixel_values, grid).pooler_output)
    mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(emb)
    emb = emb.masked_scatter(mask, feats)
    return torch.cat([emb, model.learnable_query.expand(ids.shape[0], -1, -1)], dim=1)


@torch.no_grad()
def test_mask_pass_uses_1d_positions_not_mrope(tiny):
    model, x = tiny
    ids, pv, grid = x["input_ids"], x["pixel_values"], x["image_grid_thw"]
    b, n = ids.shape
    q = model.num_queries
    ours = model.query_hidden_states(ids, x["attention_mask"], pv, grid)
    assert ours.shape == (1, q, 64)

    embeds = _embeds_with_queries(model, ids, pv, grid)
    mask = torch.ones(b, n + q, dtype=torch.long)
    lm = model.model.language_model
    manual_1d = lm(inputs_embeds=embeds, attention_mask=mask,
                   position_ids=torch.arange(n + q).view(1, 1, -1).expand(3, b, -1))
    assert torch.allclose(ours, manual_1d.last_hidden_state[:, -q:], atol=1e-5)

    ids_ext = torch.cat([ids, torch.zeros(b, q, dtype=ids.dtype)], 1)
    mm = torch.cat([x["mm_token_type_ids"], torch.zeros(b, q, dtype=torch.long)], 1)
    mrope, _ = model.model.get_rope_index(ids_ext, mm_token_type_ids=mm, image_grid_thw=grid,
                                          attention_mask=mask)
    assert not torch.equal(mrope[0], mrope[1])  # the image tokens really get 3-D positions
    with_mrope = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=mrope)
    assert (with_mrope.last_hidden_state[:, -q:] - ours).abs().max() > 1e-3


@torch.no_grad()
def test_query_states_are_post_final_norm_hidden_states(tiny):
    model, x = tiny
    hidden, logits = model.query_forward(x["input_ids"], x["attention_mask"], x["pixel_values"],
                                         x["image_grid_thw"], return_logits=True)
    ids, pv, grid = x["input_ids"], x["pixel_values"], x["image_grid_thw"]
    embeds = _embeds_with_queries(model, ids, pv, grid)
    mask = torch.ones(embeds.shape[:2], dtype=torch.long)
    full = model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids_1d(mask),
                 output_hidden_states=True)
    assert torch.allclose(full.hidden_states[-1], hidden, atol=1e-5)
    assert torch.allclose(full.logits, logits, atol=1e-4)


@torch.no_grad()
def test_left_padding_is_skipped_by_the_1d_positions(tiny):
    model, x = tiny
    ids, am = x["input_ids"], x["attention_mask"]
    padded = torch.cat([torch.zeros(1, 5, dtype=ids.dtype), ids], 1)
    pmask = torch.cat([torch.zeros(1, 5, dtype=am.dtype), am], 1)
    a = model.query_hidden_states(ids, am, x["pixel_values"], x["image_grid_thw"])
    b = model.query_hidden_states(padded, pmask, x["pixel_values"], x["image_grid_thw"])
    assert torch.allclose(a, b, atol=1e-5)
    assert position_ids_1d(pmask)[0, :6].tolist() == [1, 1, 1, 1, 1, 0]


@torch.no_grad()
def test_decode_masks_matches_sam2_decoder_with_stability_fallback(tiny):
    model, x = tiny
    feats = model.encode_sam_image(x["sam_pixels"])
    assert feats.image_embed.shape == (1, 256, 16, 16)
    assert [f.shape[1:] for f in feats.high_res] == [(32, 64, 64), (64, 32, 32)]
    prompt = torch.randn(3, 1, 256, generator=torch.Generator().manual_seed(0))
    dec, pe = model.sam.sam_mask_decoder, model.sam.sam_prompt_encoder
    assert dec.dynamic_multimask_via_stability and not dec.training
    ours = model.decode_masks(prompt, feats)  # eval: fallback as in the reference
    for i in range(3):
        _, dense = pe(points=None, boxes=None, masks=None)
        ref, iou, _, obj = dec(image_embeddings=feats.image_embed, image_pe=pe.get_dense_pe(),
                               sparse_prompt_embeddings=prompt[i:i + 1],
                               dense_prompt_embeddings=dense, multimask_output=False,
                               repeat_image=True, high_res_features=feats.high_res)
        assert torch.allclose(ours.low_res_logits[i:i + 1], ref, atol=1e-4)
        assert torch.allclose(ours.iou[i:i + 1], iou, atol=1e-5)
        assert torch.allclose(ours.object_score[i:i + 1], obj, atol=1e-5)
    all_masks, all_iou, _, _ = dec.predict_masks(
        feats.image_embed, pe.get_dense_pe(), prompt, dense.expand(3, -1, -1, -1), True,
        feats.high_res)
    token0 = model.decode_masks(prompt, feats, multimask_fallback=False)
    assert torch.allclose(token0.low_res_logits, all_masks[:, :1], atol=1e-5)
    stability = dec._get_stability_scores(all_masks[:, :1])
    for i in range(3):  # unstable single masks are replaced by the best multimask output
        best = 1 + int(all_iou[i, 1:].argmax())
        want = all_masks[i, 0] if stability[i] >= 0.98 else all_masks[i, best]
        assert torch.allclose(ours.low_res_logits[i, 0], want, atol=1e-4)


def test_forward_with_masks_gives_logits_masks_and_gradients(tiny):
    model, x = tiny
    model.zero_grad()
    model.train()
    try:
        out = model.forward_with_masks(x["input_ids"], x["attention_mask"], x["pixel_values"],
                                       x["image_grid_thw"], sam_pixels=x["sam_pixels"])
    finally:
        model.eval()
    n = x["input_ids"].shape[1] + model.num_queries
    assert out.logits.shape == (1, n, model.config.text_config.vocab_size)
    assert out.sam_prompt.shape == (1, 1, 256)
    assert out.masks.low_res_logits.shape == (1, 1, 64, 64)
    up = model.upsample_masks(out.masks.low_res_logits, (240, 320))
    assert up.shape == (1, 1, 240, 320) and up.dtype == torch.float32
    (up.sigmoid().mean() + out.logits.mean()).backward()
    for name in ("learnable_query", "conv_1d.weight", "proj_to_sam.2.weight",
                 "connector.blocks.0.attn.qkv.weight",
                 "sam.sam_mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
                 "model.language_model.layers.0.mlp.up_proj.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_lens3b_state_dict_keys_equal_the_released_key_list():
    model = build_lens("lens-3b", device="meta")
    keys = set(released_state_dict(model))
    released = set(FIXTURE.read_text().split())
    assert len(released) == 1634
    assert keys == released, (sorted(keys - released)[:5], sorted(released - keys)[:5])
    shapes = {k: tuple(v.shape) for k, v in released_state_dict(model).items()}
    assert shapes["conv_1d.weight"] == (2048, 2048, 64)
    assert shapes["learnable_query"] == (1, 64, 2048)
    assert shapes["connector.blocks.3.attn.qkv.weight"] == (6144, 2048)
    assert shapes["proj_to_sam.2.weight"] == (256, 2048)
    assert shapes["sam.image_encoder.trunk.blocks.44.proj.weight"] == (1152, 576)
    assert shapes["visual.merger.mlp.0.weight"] == (5120, 5120)
    assert shapes["model.layers.35.self_attn.k_proj.weight"] == (256, 2048)


def test_memory_modules_are_kept_on_request():
    cfg = tiny_config()
    cfg.sam.keep_memory_modules = True
    keys = set(build_lens(cfg, device="meta").state_dict())
    assert any(k.startswith("sam.memory_attention.") for k in keys)
    assert "sam.maskmem_tpos_enc" in keys
    assert not any(k.startswith("sam.memory_") for k in build_lens("tiny", device="meta")
                   .state_dict())


@pytest.mark.parametrize("change, message", [
    ({"num_queries": 32}, "conv_kernel_size"),
    ({"connector_heads": 5}, "connector_heads"),
])
def test_inconsistent_configs_are_rejected(change, message):
    cfg = tiny_config()
    for key, value in change.items():
        setattr(cfg, key, value)
    with pytest.raises(ValueError, match=message):
        cfg.validate()
    with pytest.raises(ValueError, match="mrope_section"):
        LensConfig(text_config=dict(cfg.text_config, num_attention_heads=2),
                   vision_config=cfg.vision_config).validate()


def test_config_round_trip_and_unknown_fields():
    cfg = tiny_config()
    assert LensConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="max_new_token"):
        InferenceConfig().replace(max_new_token=3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        InferenceConfig().replace(max_new_tokens=0)


def test_dense_pe_equals_sam2_in_fp32_and_works_in_bf16(tiny):
    from lens_ros.model.modeling import dense_image_pe

    model, _ = tiny
    pe = model.sam.sam_prompt_encoder
    assert torch.allclose(dense_image_pe(pe), pe.get_dense_pe(), atol=1e-6)
    bf16 = build_lens("tiny", seed=0, dtype=torch.bfloat16)
    out = dense_image_pe(bf16.sam.sam_prompt_encoder)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 256, 16, 16)
