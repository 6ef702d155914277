"""Build SAM 2 (``sam2`` package classes) from a :class:`SamConfig`, without hydra, torchvision or
CUDA, exactly as ``build_sam2("sam2_hiera_l.yaml")`` with ``apply_postprocessing=True`` would for
the LENS-3B values; smaller values give the test and demo models.
"""
from __future__ import annotations

import torch
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine
from sam2.modeling.sam2_base import SAM2Base
from sam2.modeling.sam.transformer import RoPEAttention

from lens_ros.model.config import SamConfig

#: Attributes LENS deletes after building SAM 2 (``samr1.py:296-298``).
MEMORY_MODULES = ("maskmem_tpos_enc", "memory_attention", "memory_encoder")


def memory_modules(cfg: SamConfig) -> tuple[MemoryAttention, MemoryEncoder]:
    d, fs = cfg.d_model, cfg.embedding_size

    def rope(**extra) -> RoPEAttention:
        return RoPEAttention(rope_theta=10000.0, feat_sizes=[fs, fs], embedding_dim=d,
                             num_heads=1, downsample_rate=1, dropout=0.1, **extra)

    layer = MemoryAttentionLayer(
        activation="relu", dim_feedforward=cfg.memory_attention_ff, dropout=0.1,
        pos_enc_at_attn=False, d_model=d, pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False, self_attention=rope(),
        cross_attention=rope(rope_k_repeat=True, kv_in_dim=cfg.memory_dim))
    attention = MemoryAttention(d_model=d, pos_enc_at_input=True, layer=layer,
                                num_layers=cfg.memory_attention_layers)
    encoder = MemoryEncoder(
        out_dim=cfg.memory_dim,
        position_encoding=PositionEmbeddingSine(num_pos_feats=cfg.memory_dim, normalize=True,
                                                scale=None, temperature=10000),
        mask_downsampler=MaskDownSampler(kernel_size=3, stride=2, padding=1),
        fuser=Fuser(layer=CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1e-6,
                                  use_dwconv=True), num_layers=cfg.fuser_layers))
    return attention, encoder


def build_sam(cfg: SamConfig) -> SAM2Base:
    """SAM2Base with the ``sam2_hiera_*.yaml`` model settings and the given sizes.

    Memory modules are deleted unless ``cfg.keep_memory_modules`` (LENS deletes them, so the
    released checkpoint has no such keys). Returned in eval mode, on the current default device.
    """
    trunk = Hiera(embed_dim=cfg.embed_dim, num_heads=cfg.num_heads, stages=list(cfg.stages),
                  global_att_blocks=list(cfg.global_att_blocks),
                  window_pos_embed_bkg_spatial_size=list(cfg.window_pos_embed_bkg_spatial_size),
                  window_spec=list(cfg.window_spec))
    neck = FpnNeck(position_encoding=PositionEmbeddingSine(num_pos_feats=cfg.d_model,
                                                           normalize=True, scale=None,
                                                           temperature=10000),
                   d_model=cfg.d_model, backbone_channel_list=cfg.backbone_channel_list,
                   fpn_top_down_levels=list(cfg.fpn_top_down_levels), fpn_interp_model="nearest")
    memory_attention, memory_encoder = memory_modules(cfg)
    sam = SAM2Base(
        image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        memory_attention=memory_attention, memory_encoder=memory_encoder,
        num_maskmem=cfg.num_maskmem, image_size=cfg.image_size,
        sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True, directly_add_no_mem_embed=True,
        use_high_res_features_in_sam=True, multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True, use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=False, only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True, pred_obj_scores_mlp=True, fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True, use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0, multimask_max_pt_num=1, use_mlp_for_obj_ptr_proj=True,
        compile_image_encoder=False,
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": cfg.dynamic_multimask_via_stability,
            "dynamic_multimask_stability_delta": cfg.dynamic_multimask_stability_delta,
            "dynamic_multimask_stability_thresh": cfg.dynamic_multimask_stability_thresh,
        },
    )
    if not cfg.keep_memory_modules:
        for name in MEMORY_MODULES:
            delattr(sam, name)
    return sam.eval()


def sam_dtype(sam: torch.nn.Module) -> torch.dtype:
    """Floating dtype of the SAM weights."""
    return sam.no_mem_embed.dtype


# ---- the SAM2Base internals LENS relies on (private in the sam2 package: one place to adapt) --
def prepare_backbone_features(sam: SAM2Base, backbone: dict):
    """``SAM2Base._prepare_backbone_features``: image-encoder output -> (backbone, feats, pos,
    sizes) with ``feats``/``pos`` per level (HW, B, C) and ``sizes`` per level (H, W)."""
    return sam._prepare_backbone_features(backbone)


def track_frame(head: SAM2Base, index: int, feats: list, pos: list, sizes: list, bank: dict,
                num_frames: int):
    """One non-conditioning frame through ``head``: memory attention over ``bank``, the mask
    decoder, then the memory encoder (``SAM2Base._track_step`` + ``_encode_memory_in_output``).

    Returns (out, multi_logits (B, 3, h, w), ious (B, 3), low_res (B, 1, h, w), obj_score
    (B, 1)); ``out`` is the frame's memory-bank entry (``pred_masks``, ``obj_ptr``,
    ``object_score_logits``, ``maskmem_features``, ``maskmem_pos_enc``)."""
    out, sam_out, _, _ = head._track_step(index, False, feats, pos, sizes, None, None, bank,
                                          num_frames, False, None)
    multi, _, ious, low_res, high_res, obj_ptr, obj_score = sam_out
    out.update(pred_masks=low_res, obj_ptr=obj_ptr, object_score_logits=obj_score)
    head._encode_memory_in_output(feats, sizes, None, True, high_res, obj_score, out)
    return out, multi, ious, low_res, obj_score


def stability_fallback(decoder, masks: torch.Tensor, iou: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder._dynamic_multimask_via_stability``: keep the single-mask output when it is
    stable, else the best of the multimask outputs. ``masks`` (B, 4, h, w) logits with the
    single output first, ``iou`` (B, 4); returns (B, 1, h, w) and (B, 1)."""
    return decoder._dynamic_multimask_via_stability(masks, iou)
