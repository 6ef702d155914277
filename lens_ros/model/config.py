"""Configuration dataclasses of the LENS model and of inference.

Defaults are the released LENS-3B (Qwen2.5-VL-3B-Instruct + SAM 2 Hiera-L, 64 context queries);
as in the reference implementation (hustvl/LENS). Presets (``presets.py``) derive
smaller models from these classes. Everything here is plain data: no torch import.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lens_ros.configuration import build_config

#: Qwen2.5-VL-3B-Instruct language-model settings (the hub's ``config.json``).
QWEN25_VL_3B_TEXT: dict[str, Any] = {
    "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008,
    "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
    "hidden_act": "silu", "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "use_sliding_window": False, "sliding_window": 32768, "max_window_layers": 70,
    "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
    "pad_token_id": 151643,
}

#: Qwen2.5-VL-3B-Instruct vision-tower settings.
QWEN25_VL_3B_VISION: dict[str, Any] = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
    "in_channels": 3, "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2,
    "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "out_hidden_size": 2048,
    "tokens_per_second": 2, "hidden_act": "silu",
}

#: Qwen2.5 special-token ids of the real tokenizer (a local tokenizer has its own ids).
QWEN25_TOKEN_IDS: dict[str, int] = {
    "image_token_id": 151655, "video_token_id": 151656,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653,
}


@dataclass
class SamConfig:
    """SAM 2 as built by ``sam2_hiera_l.yaml`` (SAM 2.0, not 2.1) plus ``build_sam2``'s overrides.

    The image encoder is Hiera + FPN neck; ``SAM2Base`` builds its own prompt encoder and mask
    decoder with prompt dimension ``d_model`` (256, the target of LENS' ``proj_to_sam``).
    """

    variant: str = "sam2_hiera_l"  #: name of the SAM 2 config these values come from
    image_size: int = 1024  #: square SAM input side in pixels; the image is squashed to it
    embed_dim: int = 144  #: Hiera stage-1 channels (doubled at every stage)
    num_heads: int = 2  #: Hiera stage-1 attention heads (doubled at every stage)
    stages: list[int] = field(default_factory=lambda: [2, 6, 36, 4])  #: Hiera blocks per stage
    #: Hiera blocks with global attention; none may be the first block of a stage > 1
    global_att_blocks: list[int] = field(default_factory=lambda: [23, 33, 43])
    #: background size of Hiera's interpolated absolute position embedding
    window_pos_embed_bkg_spatial_size: list[int] = field(default_factory=lambda: [7, 7])
    window_spec: list[int] = field(default_factory=lambda: [8, 4, 16, 8])  #: window per stage
    d_model: int = 256  #: FPN neck / prompt / decoder width (LENS projects to it)
    fpn_top_down_levels: list[int] = field(default_factory=lambda: [2, 3])  #: FPN levels fused
    num_maskmem: int = 7  #: memory frames of the video model (tracking only)
    memory_attention_layers: int = 4  #: memory-attention layers (tracking only)
    memory_attention_ff: int = 2048  #: memory-attention MLP width (tracking only)
    memory_dim: int = 64  #: memory-encoder output channels (tracking only)
    fuser_layers: int = 2  #: memory-encoder fuser CXBlocks (tracking only)
    #: build and keep ``memory_attention``, ``memory_encoder`` and ``maskmem_tpos_enc``; LENS
    #: deletes them (``samr1.py:296-298``), so False gives the released checkpoint's key set
    keep_memory_modules: bool = False
    #: single-mask output falls back to the best multimask output when unstable (eval mode);
    #: off for decoders trained with the single output only (the demo preset)
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05  #: logit band of the stability score
    dynamic_multimask_stability_thresh: float = 0.98  #: stability below this triggers fallback

    @property
    def backbone_channel_list(self) -> list[int]:
        """Hiera output channels per level, coarsest first (FPN neck input)."""
        return [self.embed_dim * 2 ** i for i in reversed(range(len(self.stages)))]

    @property
    def embedding_size(self) -> int:
        """Side of the lowest-resolution image embedding (stride 16)."""
        return self.image_size // 16

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution mask logits (stride 4): 256 at 1024 px."""
        return self.image_size // 4


@dataclass
class ProcessingConfig:
    """How images are prepared for the language model (LENS demo/RefCOCO setting)."""

    patch_factor: int = 28  #: smart_resize factor: patch 14 x spatial merge 2
    min_pixels: int = 4 * 28 * 28  #: smart_resize lower area bound (qwen_vl_utils default 3136)
    max_pixels: int = 1_000_000  #: smart_resize upper area bound (LENS ``--max_pixels``)
    #: SAM normalisation on the 0..255 scale (ImageNet mean/std, as LENS' demo)
    sam_pixel_mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    sam_pixel_std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])


@dataclass
class LensConfig:
    """The whole LENS model: Qwen2.5-VL + 64 queries + connector + conv + projection + SAM 2.

    Defaults are LENS-3B. ``text_config``/``vision_config`` are keyword dicts of transformers'
    ``Qwen2_5_VLTextConfig``/``Qwen2_5_VLVisionConfig``; the token ids must be those of the
    tokenizer shipped with the checkpoint.
    """

    text_config: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(QWEN25_VL_3B_TEXT))
    vision_config: dict[str, Any] = field(
        default_factory=lambda: copy.deepcopy(QWEN25_VL_3B_VISION))
    image_token_id: int = QWEN25_TOKEN_IDS["image_token_id"]  #: id of ``<|image_pad|>``
    video_token_id: int = QWEN25_TOKEN_IDS["video_token_id"]  #: id of ``<|video_pad|>``
    vision_start_token_id: int = QWEN25_TOKEN_IDS["vision_start_token_id"]  #: ``<|vision_start|>``
    vision_end_token_id: int = QWEN25_TOKEN_IDS["vision_end_token_id"]  #: ``<|vision_end|>``
    tie_word_embeddings: bool = True  #: lm_head shares the token embedding (Qwen2.5-VL-3B)
    num_queries: int = 64  #: learnable context queries appended after the sequence
    #: run the 64 query states through the connector (``if_use_qwen_connector``; LENS: True)
    use_connector: bool = True
    connector_depth: int = 4  #: pre-LN ViT blocks of the connector
    connector_heads: int = 16  #: connector attention heads (head dim = hidden / heads)
    connector_mlp_ratio: float = 4.0  #: connector MLP width = ratio x hidden
    connector_act: str = "quick_gelu"  #: connector MLP activation (transformers ACT2FN name)
    connector_norm_eps: float = 1e-6  #: connector LayerNorm epsilon
    #: ``conv_1d`` kernel; equal to ``num_queries`` so the 64 query states collapse to one
    conv_kernel_size: int = 64
    proj_hidden_size: int | None = None  #: proj_to_sam hidden width (None: the LLM hidden size)
    sam: SamConfig = field(default_factory=SamConfig)  #: the SAM 2 part
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)  #: image preparation
    #: demo deviation (off in LENS): the vision tower also gets two channels with the pixel's
    #: x and y in [-1, 1] (needs ``vision_config["in_channels"] == 5``), docs/demo.md
    coord_channels: bool = False
    #: demo deviation (off in LENS): the answer's parsed box also goes to the SAM 2 decoder as
    #: its two box-corner tokens, beside the query prompt
    box_prompt: bool = False

    @property
    def hidden_size(self) -> int:
        """Width of the language model, of the queries and of the connector."""
        return int(self.text_config["hidden_size"])

    def validate(self) -> None:
        """Raise ValueError naming the field when the sizes cannot work together."""
        d = self.hidden_size
        heads = int(self.text_config["num_attention_heads"])
        section = (self.text_config.get("rope_scaling") or {}).get("mrope_section")
        if section is not None and sum(section) * 2 != d // heads:
            raise ValueError(f"text_config mrope_section {section} must sum to head_dim/2 = "
                             f"{d // heads // 2}; change mrope_section or num_attention_heads")
        if int(self.vision_config["out_hidden_size"]) != d:
            out = self.vision_config["out_hidden_size"]
            raise ValueError(f"vision_config out_hidden_size {out} must equal text hidden_size "
                             f"{d}")
        if d % self.connector_heads:
            raise ValueError(f"connector_heads {self.connector_heads} must divide hidden {d}")
        if self.conv_kernel_size != self.num_queries:
            raise ValueError(f"conv_kernel_size {self.conv_kernel_size} must equal num_queries "
                             f"{self.num_queries} (conv_1d collapses the queries to one token)")
        channels = int(self.vision_config.get("in_channels", 3))
        if channels != (5 if self.coord_channels else 3):
            raise ValueError(f"vision_config in_channels {channels} does not fit coord_channels="
                             f"{self.coord_channels}; use 5 with coordinate channels, else 3")
        if self.sam.image_size % 16:
            raise ValueError(f"sam.image_size {self.sam.image_size} must be a multiple of 16")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``lens`` section of ``config.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LensConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError naming them."""
        data = dict(data)
        sam = build_config(SamConfig, data.pop("sam", {}), "sam")
        proc = build_config(ProcessingConfig, data.pop("processing", {}), "processing")
        return build_config(cls, {**data, "sam": sam, "processing": proc}, "lens")


@dataclass
class InferenceConfig:
    """How ``LensSegmenter`` runs one command (generation, limits, gates).

    Per-checkpoint defaults are stored in ``inference_config.json``; keyword overrides passed to
    ``LensSegmenter.from_pretrained`` win over them.
    """

    max_new_tokens: int = 256  #: generation budget (LENS demo); hitting it sets ``truncated``
    #: default prompt: False = plain box question (released RefCOCO model), True = the
    #: ``<think>`` chain-of-thought template (ReasonSeg CoT model)
    reasoning: bool = False
    max_command_chars: int = 500  #: longer commands raise BadCommandError
    #: repetition penalty for greedy decoding; None = the checkpoint's generation_config.json
    #: value (Qwen releases ship 1.05), 1.0 disables it
    repetition_penalty: float | None = None
    #: no-target gate on SAM 2's object-score logit: below it the result is NO_TARGET.
    #: None (default, as the paper) disables it; 0.0 is SAM 2's own "object present" boundary
    no_target_object_score: float | None = None
    #: no-target gate on SAM 2's predicted IoU in [0, 1]; None (default) disables it
    no_target_iou: float | None = None
    #: also report NO_TARGET when the answer holds no parsable box (off by default)
    no_target_without_box: bool = False
    #: mask decoder falls back to the best multimask output when the single mask is unstable
    #: (SAM 2's rule, as LENS). Only for decoders whose multimask outputs were trained: the demo
    #: model trains the single output only, and the fallback there picks untrained outputs
    stability_fallback: bool = True
    stability_delta: float = 0.05  #: logit band of SAM 2's stability score
    stability_thresh: float = 0.98  #: stability below this triggers the fallback
    mask_threshold: float = 0.0  #: a pixel is in the mask when its upsampled logit exceeds this
    #: override of the LLM image area bound (None: the checkpoint's ``processing.max_pixels``);
    #: clamped to the processor's own bound
    max_pixels: int | None = None
    #: fast mask pass (not LENS): reuse the generation KV cache and run only the 64 queries
    #: (``fast_path.py``); M-RoPE positions instead of the reference's 1-D ones change the
    #: mask, so it is off unless measured agreement allows it (docs/track3d.md)
    fast_mask_pass: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the field and the accepted range."""
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_command_chars < 1:
            raise ValueError(f"max_command_chars must be >= 1, got {self.max_command_chars}")
        if self.no_target_iou is not None and not 0.0 <= self.no_target_iou <= 1.0:
            raise ValueError(f"no_target_iou must be in [0, 1] or None, got {self.no_target_iou}")
        if not 0.0 < self.stability_thresh <= 1.0:
            raise ValueError(f"stability_thresh must be in (0, 1], got {self.stability_thresh}")
        if self.max_pixels is not None and self.max_pixels < 28 * 28:
            raise ValueError(f"max_pixels must be >= 784 or None, got {self.max_pixels}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``inference_config.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InferenceConfig":
        """Build from a dict; unknown keys raise ValueError naming them."""
        return build_config(cls, data, "inference")

    def replace(self, **overrides: Any) -> "InferenceConfig":
        """A validated copy with ``overrides`` applied; unknown names raise ValueError."""
        new = build_config(type(self), {**self.to_dict(), **overrides}, "inference")
        new.validate()
        return new
