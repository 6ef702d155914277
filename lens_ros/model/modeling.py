"""LensModel: Qwen2.5-VL + 64 context queries + connector + conv_1d + proj_to_sam + SAM 2.

A faithful re-implementation of ``SAMR1ForConditionalGeneration_qwen2p5``
(hustvl/LENS ``src/open_r1/trainer/samr1.py:260-465``) on transformers' own
``Qwen2_5_VLForConditionalGeneration`` and the ``sam2`` package's modules.

The mask pass (as the reference implementation, hustvl/LENS): embed prompt + generated ids, scatter the vision
features into the image tokens, append the 64 query embeddings (attention mask extended with
ones), run the language model with **1-D positions** ``cumsum(mask) - 1`` (pads set to 1) on all
three M-RoPE axes, take the post-final-norm hidden states of the last 64 positions, then
connector -> conv_1d -> proj_to_sam = one 256-d sparse prompt for the SAM 2 mask decoder
(no points, no box, dense = ``no_mask_embed``), ``multimask_output=False`` with the eval-mode
stability fallback, low-res logits upsampled bilinearly to the original size.

``forward`` is Qwen's (M-RoPE, used by ``generate`` and by GRPO log-probs of the reference model);
the LENS head lives in the public methods below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.activations import ACT2FN

from lens_ros.model.config import LensConfig
from lens_ros.model.coords import box_corner_prompt, coordinate_hook
from lens_ros.model.sam import (build_sam, prepare_backbone_features, sam_dtype,
                                stability_fallback)


def qwen_config(cfg: LensConfig) -> Qwen2_5_VLConfig:
    """The transformers config of the Qwen2.5-VL part of ``cfg``."""
    text = dict(cfg.text_config, tie_word_embeddings=cfg.tie_word_embeddings)
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=dict(cfg.vision_config),
        image_token_id=cfg.image_token_id, video_token_id=cfg.video_token_id,
        vision_start_token_id=cfg.vision_start_token_id,
        vision_end_token_id=cfg.vision_end_token_id,
        tie_word_embeddings=cfg.tie_word_embeddings)


def position_ids_1d(attention_mask: torch.Tensor) -> torch.Tensor:
    """transformers-4.51 text-only positions: ``cumsum(mask) - 1``, 1 where the mask is 0.

    Arguments:
      attention_mask (torch.Tensor): (B, L) 0/1.
    Returns:
      (B, L) int64; transformers expands it to the same row on the 3 M-RoPE axes.
    """
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


def dense_image_pe(prompt_encoder) -> torch.Tensor:
    """``prompt_encoder.get_dense_pe()`` as LENS' vendored SAM 2 computes it: the grid and the
    coordinates in the Gaussian matrix's dtype, so that a bf16 model works (the ``sam2``
    package's version multiplies fp32 coordinates with the matrix and fails in bf16).
    Equal to ``get_dense_pe()`` in fp32. Returns (1, C, h, w).
    """
    gauss = prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    h, w = prompt_encoder.image_embedding_size
    grid = torch.ones((h, w), device=gauss.device, dtype=gauss.dtype)
    y = (grid.cumsum(dim=0) - 0.5) / h
    x = (grid.cumsum(dim=1) - 0.5) / w
    coords = (2 * torch.stack([x, y], dim=-1) - 1) @ gauss
    coords = 2 * math.pi * coords
    return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1)[None]


class ConnectorAttention(nn.Module):
    """Bidirectional multi-head self-attention over the queries (no mask, no RoPE)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D)."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class ConnectorMlp(nn.Module):
    """fc1 -> activation -> fc2 (the reference's ``VisionMlp``)."""

    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACT2FN[act]
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConnectorBlock(nn.Module):
    """Pre-LN ViT block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, act: str, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.attn = ConnectorAttention(dim, num_heads)
        self.mlp = ConnectorMlp(dim, int(dim * mlp_ratio), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class QueryConnector(nn.Module):
    """``Qwen2VLVisionConnectorSimple``: + pos_embed, then ``depth`` blocks, no final norm."""

    def __init__(self, cfg: LensConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.blocks = nn.ModuleList([
            ConnectorBlock(d, cfg.connector_heads, cfg.connector_mlp_ratio, cfg.connector_act,
                           cfg.connector_norm_eps) for _ in range(cfg.connector_depth)])
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_queries, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Q, D) -> (B, Q, D)."""
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x


@dataclass
class SamImageFeatures:
    """SAM 2 image features of a batch of images (``no_mem_embed`` already added).

    Attributes:
      image_embed (torch.Tensor): (B, 256, S/16, S/16).
      high_res (list[torch.Tensor]): [(B, 32, S/4, S/4), (B, 64, S/8, S/8)], already projected by
        the decoder's ``conv_s0``/``conv_s1``.
    """

    image_embed: torch.Tensor
    high_res: list[torch.Tensor]

    def index(self, i: int) -> "SamImageFeatures":
        """The features of image ``i`` as a batch of one."""
        return SamImageFeatures(self.image_embed[i:i + 1], [f[i:i + 1] for f in self.high_res])


@dataclass
class MaskPrediction:
    """Output of the SAM 2 mask decoder for a batch of prompts.

    Attributes:
      low_res_logits (torch.Tensor): (B, 1, S/4, S/4) mask logits (256x256 at S = 1024).
      iou (torch.Tensor): (B, 1) predicted IoU in [0, 1] of the returned mask.
      object_score (torch.Tensor): (B, 1) object-score logit (> 0: object present).
    """

    low_res_logits: torch.Tensor
    iou: torch.Tensor
    object_score: torch.Tensor


@dataclass
class LensForwardOutput:
    """One training/inference pass with the queries.

    Attributes:
      logits (torch.Tensor | None): (B, L + Q, V) LM logits over the whole sequence incl. queries
        (computed with 1-D positions, as the reference's policy forward).
      query_hidden (torch.Tensor): (B, Q, D) post-final-norm hidden states of the queries.
      sam_prompt (torch.Tensor): (B, 1, 256) the sparse SAM prompt.
      masks (MaskPrediction | None): decoder output; None when no image features were given.
    """

    logits: torch.Tensor | None
    query_hidden: torch.Tensor
    sam_prompt: torch.Tensor
    masks: MaskPrediction | None


class LensModel(Qwen2_5_VLForConditionalGeneration):
    """LENS. State-dict names of the head match the released checkpoint (``learnable_query``,
    ``connector.*``, ``conv_1d.*``, ``proj_to_sam.{0,2}.*``, ``sam.*``); Qwen's names follow
    transformers 5 (``model.language_model.*``, ``model.visual.*``) and are mapped to the released
    4.51 names by ``checkpoints.py``. ``lens_config`` holds the :class:`LensConfig`.
    """

    def __init__(self, lens_config: LensConfig) -> None:
        lens_config.validate()
        super().__init__(qwen_config(lens_config))
        self.lens_config = lens_config
        d = lens_config.hidden_size
        q = lens_config.num_queries
        self.learnable_query = nn.Parameter(torch.empty(1, q, d))
        self.connector = QueryConnector(lens_config) if lens_config.use_connector else None
        self.conv_1d = nn.Conv1d(d, d, kernel_size=lens_config.conv_kernel_size)
        proj_hidden = lens_config.proj_hidden_size or d
        self.proj_to_sam = nn.Sequential(nn.Linear(d, proj_hidden), nn.GELU(),
                                         nn.Linear(proj_hidden, lens_config.sam.d_model))
        self.sam = build_sam(lens_config.sam)
        if lens_config.tie_word_embeddings:
            # explicit: transformers ties in init_weights, which no_init_weights() skips
            self.lm_head.weight = self.model.language_model.embed_tokens.weight
        if lens_config.coord_channels:  # demo deviation, see coords.py
            self.model.visual.register_forward_pre_hook(coordinate_hook, with_kwargs=True)
        # samr1.py:310-314; done explicitly (under from_pretrained the reference's may be no-ops)
        nn.init.normal_(self.learnable_query, mean=0.0, std=0.02)
        nn.init.normal_(self.conv_1d.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.conv_1d.bias)

    @property
    def num_queries(self) -> int:
        return self.lens_config.num_queries

    # ---- the language-model pass with the queries -------------------------------------------
    def query_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      pixel_values: torch.Tensor | None = None,
                      image_grid_thw: torch.Tensor | None = None,
                      return_logits: bool = False, mm_encoder_outputs=None,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run prompt + completion ids + the queries with 1-D positions.

        Arguments:
          input_ids (torch.Tensor): (B, L) int64, the full sequence (prompt + generated ids).
          attention_mask (torch.Tensor): (B, L) 0/1; 0 on pad tokens (the reference: ids == pad).
          pixel_values (torch.Tensor | None): (N, C*T*P*P) patches of the images in the batch.
          image_grid_thw (torch.Tensor | None): (num_images, 3) grids.
          return_logits (bool): also apply ``lm_head`` to every position.
          mm_encoder_outputs: transformers' cached vision-tower output instead of pixel_values.
        Returns:
          (hidden (B, L + Q, D) after the final RMSNorm, logits (B, L + Q, V) or None)
        """
        b = input_ids.shape[0]
        q = self.num_queries
        embeds = self.get_input_embeddings()(input_ids)
        queries = self.learnable_query.to(embeds.dtype).expand(b, -1, -1)
        embeds = torch.cat([embeds, queries], dim=1)
        # the queries get a non-image id so that only real image tokens receive vision features
        pad = self.config.text_config.pad_token_id
        pad = 0 if pad is None else pad
        ids = torch.cat([input_ids, input_ids.new_full((b, q), pad)], dim=1)
        mask = torch.cat([attention_mask, attention_mask.new_ones((b, q))], dim=1)
        out = self.model(input_ids=ids, inputs_embeds=embeds, attention_mask=mask,
                         position_ids=position_ids_1d(mask), pixel_values=pixel_values,
                         image_grid_thw=image_grid_thw, mm_encoder_outputs=mm_encoder_outputs,
                         use_cache=False)
        hidden = out.last_hidden_state
        return hidden, (self.lm_head(hidden) if return_logits else None)

    def query_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            pixel_values: torch.Tensor | None = None,
                            image_grid_thw: torch.Tensor | None = None,
                            mm_encoder_outputs=None) -> torch.Tensor:
        """(B, Q, D): ``hidden_states[-1][:, -Q:]`` of :meth:`query_forward`."""
        hidden, _ = self.query_forward(input_ids, attention_mask, pixel_values, image_grid_thw,
                                       mm_encoder_outputs=mm_encoder_outputs)
        return hidden[:, -self.num_queries:]

    def sam_prompt(self, query_hidden: torch.Tensor) -> torch.Tensor:
        """connector -> conv_1d -> proj_to_sam: (B, Q, D) -> (B, 1, 256)."""
        x = self.connector(query_hidden) if self.connector is not None else query_hidden
        x = self.conv_1d(x.transpose(1, 2)).transpose(1, 2).contiguous()
        return self.proj_to_sam(x)

    # ---- SAM 2 -----------------------------------------------------------------------------
    def encode_sam_image(self, sam_pixels: torch.Tensor) -> SamImageFeatures:
        """SAM 2 image encoder (Hiera + FPN) on normalised (B, 3, S, S) images."""
        sam = self.sam
        dtype = sam_dtype(sam)
        backbone = sam.forward_image(sam_pixels.to(dtype))
        _, feats, _, sizes = prepare_backbone_features(sam, backbone)
        # the FPN's top-down level comes out in fp32; the reference casts all to the image dtype
        feats = [f.to(dtype) for f in feats]
        feats[-1] = feats[-1] + sam.no_mem_embed  # directly_add_no_mem_embed
        b = sam_pixels.shape[0]
        maps = [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(feats, sizes)]
        return SamImageFeatures(image_embed=maps[-1], high_res=maps[:-1])

    def decode_masks(self, prompt: torch.Tensor, features: SamImageFeatures,
                     multimask_fallback: bool | None = None,
                     boxes: torch.Tensor | None = None) -> MaskPrediction:
        """SAM 2 prompt encoder (no points/box/mask) + decoder, ``multimask_output=False``.

        Arguments:
          prompt (torch.Tensor): (B, 1, 256) sparse prompt from :meth:`sam_prompt`.
          features (SamImageFeatures): batch B (one image per prompt) or 1 (shared by all).
          multimask_fallback (bool | None): use the stability fallback to the best multimask
            output; None = as the reference (only in eval mode, when the decoder has it enabled).
          boxes (torch.Tensor | None): (B, 4) xyxy in SAM input pixels, used only with
            ``lens_config.box_prompt`` (demo deviation: two box-corner tokens after the prompt).
        """
        dec = self.sam.sam_mask_decoder
        pe = self.sam.sam_prompt_encoder
        b = prompt.shape[0]
        n = features.image_embed.shape[0]
        if n not in (1, b):
            raise ValueError(f"{n} image features for {b} prompts; give one per prompt or one")
        _, dense = pe(points=None, boxes=None, masks=None)
        dtype = features.image_embed.dtype
        if self.lens_config.box_prompt:
            if boxes is None:  # no parsed box: the whole image
                s = float(self.lens_config.sam.image_size)
                boxes = prompt.new_tensor([[0.0, 0.0, s, s]]).expand(b, -1)
            corners, dense = box_corner_prompt(pe, boxes.to(dtype))
            prompt = torch.cat([prompt.to(dtype), corners.to(dtype)], dim=1)
        masks, iou, _, obj = dec.predict_masks(
            image_embeddings=features.image_embed, image_pe=dense_image_pe(pe),
            sparse_prompt_embeddings=prompt.to(dtype),
            dense_prompt_embeddings=dense.to(dtype).expand(b, -1, -1, -1),
            repeat_image=(n != b), high_res_features=features.high_res)
        if multimask_fallback is None:
            multimask_fallback = dec.dynamic_multimask_via_stability and not dec.training
        if multimask_fallback:
            masks, iou = stability_fallback(dec, masks, iou)
        else:
            masks, iou = masks[:, 0:1], iou[:, 0:1]
        return MaskPrediction(low_res_logits=masks, iou=iou, object_score=obj)

    @staticmethod
    def upsample_masks(low_res_logits: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """Bilinear (align_corners False), fp32, straight to (H, W): (B,1,h,w) -> (B,1,H,W)."""
        return F.interpolate(low_res_logits.float(), size=tuple(orig_hw), mode="bilinear",
                             align_corners=False)

    # ---- one pass for training ---------------------------------------------------------------
    def forward_with_masks(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           pixel_values: torch.Tensor | None = None,
                           image_grid_thw: torch.Tensor | None = None,
                           sam_pixels: torch.Tensor | None = None,
                           image_features: SamImageFeatures | None = None,
                           return_logits: bool = True,
                           multimask_fallback: bool | None = None,
                           boxes: torch.Tensor | None = None) -> LensForwardOutput:
        """LM logits and low-res mask logits in one pass (the reference's policy forward).

        Give ``sam_pixels`` (B or 1, 3, S, S) or precomputed ``image_features``; with neither,
        ``masks`` is None. Shapes as in :meth:`query_forward` and :meth:`decode_masks`.
        """
        hidden, logits = self.query_forward(input_ids, attention_mask, pixel_values,
                                            image_grid_thw, return_logits=return_logits)
        query_hidden = hidden[:, -self.num_queries:]
        prompt = self.sam_prompt(query_hidden)
        if image_features is None and sam_pixels is not None:
            image_features = self.encode_sam_image(sam_pixels)
        masks = (self.decode_masks(prompt, image_features, multimask_fallback, boxes)
                 if image_features is not None else None)
        return LensForwardOutput(logits=logits, query_hidden=query_hidden, sam_prompt=prompt,
                                 masks=masks)

    # ---- checkpoints -------------------------------------------------------------------------
    def save_pretrained(self, save_directory, state_dict=None, processor=None, inference=None,
                        **ignored) -> None:
        """Write config.json + safetensors under the released names (see checkpoints.py).

        Keyword arguments of transformers' ``save_pretrained`` (``safe_serialization``, ...) are
        accepted and ignored so that Trainer checkpointing works; weights are always safetensors.
        """
        from lens_ros.model.checkpoints import save_checkpoint

        save_checkpoint(self, save_directory, processor=processor, inference=inference,
                        state_dict=state_dict)
