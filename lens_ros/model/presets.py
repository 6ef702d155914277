"""Named LENS configurations: ``lens-3b`` (the paper), ``tiny`` (tests), ``mid`` (GPU checks),
``demo`` (shipped model).

``build_lens(name)`` builds a random-weight model; ``save_preset_checkpoint(name, dir)`` writes a
loadable checkpoint directory (weights + tokenizer + processor + inference defaults).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from lens_ros.model.config import LensConfig, ProcessingConfig, SamConfig
from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE

#: merged visual tokens per side of the demo model's input (patch 14 x spatial merge 2 = 28 px
#: per token): the demo's LLM sees DEMO_TOKEN_GRID ** 2 image tokens
DEMO_TOKEN_GRID = DEMO_IMAGE_SIZE // (14 * 2)

#: Qwen special-token ids of a tokenizer from :func:`tokenizer.build_bpe_tokenizer` (ids 0..13).
LOCAL_TOKEN_IDS = {"image_token_id": 12, "video_token_id": 13,
                   "vision_start_token_id": 9, "vision_end_token_id": 10}
_LOCAL_TEXT_IDS = {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0}


@dataclass(frozen=True)
class Preset:
    """A named configuration.

    Attributes:
      name (str): registry key.
      description (str): one line for listings and the README.
      make_config (Callable[[], LensConfig]): a fresh config (callers may edit it).
      make_tokenizer (Callable | None): builds the local tokenizer; None when the tokenizer comes
        only with a real checkpoint (``lens-3b``).
      inference (dict): InferenceConfig overrides saved with the preset's checkpoints.
    """

    name: str
    description: str
    make_config: Callable[[], LensConfig]
    make_tokenizer: Callable[[], Any] | None = None
    inference: dict[str, Any] = field(default_factory=dict)

    def config(self) -> LensConfig:
        """A fresh, validated :class:`LensConfig`."""
        cfg = self.make_config()
        cfg.validate()
        return cfg


def lens_3b_config() -> LensConfig:
    """The released LENS-3B: Qwen2.5-VL-3B-Instruct, SAM 2 Hiera-L at 1024 px (all defaults)."""
    return LensConfig()


def _small_sam(image_size: int) -> SamConfig:
    # Hiera with 16 channels; global blocks avoid the q-pool blocks 1, 3, 5 (a global block that
    # starts a q-pooling stage divides by window_size // q_stride = 0 in sam2's hieradet.py);
    # tracking-only memory modules shrunk for the same reason the encoder is
    return SamConfig(variant="tiny_hiera", image_size=image_size, embed_dim=16, num_heads=1,
                     stages=[1, 2, 2, 1], global_att_blocks=[2, 4], window_spec=[8, 4, 4, 4],
                     memory_attention_layers=1, memory_attention_ff=256, fuser_layers=1)


def tiny_config() -> LensConfig:
    """A few million parameters, CPU-fast: the real classes with small sizes (for tests)."""
    text = {
        "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        # sum(mrope_section) must be head_dim / 2 = 64 / 4 / 2 (else the rotary split fails)
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        **_LOCAL_TEXT_IDS,
    }
    vision = {
        "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "in_channels": 3,
        "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2, "window_size": 112,
        "fullatt_block_indexes": [1], "out_hidden_size": 64, "tokens_per_second": 2,
        "hidden_act": "silu",
    }
    return LensConfig(text_config=text, vision_config=vision, **LOCAL_TOKEN_IDS,
                      connector_heads=4, sam=_small_sam(256),
                      # 320x240 -> 84x112 LLM pixels -> 12 image tokens
                      processing=ProcessingConfig(max_pixels=112 * 112))


def mid_config() -> LensConfig:
    """About 220M parameters, for GPU checks of the training path (ZeRO-3, throughput): a
    1024-wide 8-layer LM, a 4-block 256-wide vision tower, the full 4-block connector (64 queries,
    so ``learnable_query`` has 65 536 values, above DeepSpeed's "auto" persistence threshold
    10 x 1024) and a 16-channel Hiera SAM 2 at 512 px; local BPE tokenizer."""
    cfg = tiny_config()
    cfg.text_config.update({"hidden_size": 1024, "intermediate_size": 2816,
                            "num_hidden_layers": 8, "num_attention_heads": 16,
                            "num_key_value_heads": 2,
                            "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]}})
    cfg.vision_config.update({"depth": 4, "hidden_size": 256, "intermediate_size": 512,
                              "num_heads": 4, "fullatt_block_indexes": [1, 3],
                              "out_hidden_size": 1024})
    cfg.connector_heads = 16
    cfg.sam = _small_sam(512)
    cfg.processing = ProcessingConfig(max_pixels=224 * 224)
    return cfg


def demo_config() -> LensConfig:
    """The shipped demo model (its recipe: docs/demo.md): 192-wide 3-layer LM, 2-block 128-wide
    vision tower with coordinate channels, 112 px LLM input (16 image tokens), word-level
    tokenizer, a 1-block connector and a 16-channel Hiera SAM 2 at 128 px with the answer box as
    extra corner tokens. ``coord_channels`` and ``box_prompt`` are the documented deviations."""
    cfg = tiny_config()
    cfg.text_config.update({"vocab_size": 384, "hidden_size": 192, "intermediate_size": 512,
                            "num_hidden_layers": 3, "num_attention_heads": 4,
                            "num_key_value_heads": 2, "max_position_embeddings": 1024,
                            "rope_theta": 10000.0,
                            "rope_scaling": {"type": "mrope", "mrope_section": [8, 8, 8]}})
    cfg.vision_config.update({"hidden_size": 128, "intermediate_size": 256, "num_heads": 4,
                              "in_channels": 5, "fullatt_block_indexes": [0, 1],
                              "out_hidden_size": 192})
    cfg.connector_depth = 1
    cfg.processing.max_pixels = DEMO_IMAGE_SIZE * DEMO_IMAGE_SIZE
    cfg.sam = _small_sam(128)
    # trained from scratch with the single-mask output only: SAM 2's fallback to the multimask
    # outputs would pick untrained masks (measured: ~4 % near-whole-image masks; test-split cIoU
    # 14.9 with the fallback, 37.0 without)
    cfg.sam.dynamic_multimask_via_stability = False
    cfg.coord_channels = True
    cfg.box_prompt = True
    return cfg


def _demo_tokenizer():
    from lens_ros.synthetic.vocabulary import VOCABULARY

    from lens_ros.model.word_tokenizer import build_word_tokenizer

    return build_word_tokenizer(VOCABULARY, max_coordinate=DEMO_IMAGE_SIZE)


def _local_tokenizer():
    from lens_ros.model.tokenizer import build_bpe_tokenizer

    return build_bpe_tokenizer(vocab_size=512)


LENS_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add (or replace) a preset in :data:`LENS_PRESETS`."""
    LENS_PRESETS[preset.name] = preset
    return preset


register_preset(Preset("lens-3b", "released LENS-3B: Qwen2.5-VL-3B + SAM 2 Hiera-L 1024 px "
                       "(load the real weights; random init is for shape checks only)",
                       lens_3b_config))
register_preset(Preset("tiny", "5.5 M-parameter test model (random init), 256 px SAM, local BPE tokenizer",
                       tiny_config, _local_tokenizer, inference={"max_new_tokens": 24}))
register_preset(Preset("mid", "~220M-parameter GPU check model: 1024-wide 8-layer LM, full "
                       "connector, 512 px SAM, local BPE tokenizer", mid_config, _local_tokenizer,
                       inference={"max_new_tokens": 24}))
register_preset(Preset("demo", "9.9 M-parameter shipped demo model (19.9 MB in fp16): word-level tokenizer, "
                       f"{DEMO_IMAGE_SIZE} px, coordinate channels, box-corner SAM prompt",
                       demo_config, _demo_tokenizer,
                       inference={"max_new_tokens": 48, "reasoning": True,
                                  "repetition_penalty": 1.0, "stability_fallback": False}))


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the known names otherwise."""
    try:
        return LENS_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown LENS preset {name!r}; known: {sorted(LENS_PRESETS)}") from None


def build_lens(config: str | LensConfig, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, seed: int | None = None):
    """A random-weight :class:`LensModel` in eval mode.

    Arguments:
      config (str | LensConfig): preset name or config.
      device: where to build; ``"meta"`` builds shapes only, with no memory.
      dtype: parameter dtype (default float32).
      seed (int | None): seeds torch's RNG first, for reproducible weights.
    """
    from lens_ros.model.modeling import LensModel

    cfg = get_preset(config).config() if isinstance(config, str) else copy.deepcopy(config)
    if seed is not None:
        torch.manual_seed(seed)
    if str(device) == "meta":
        # parameters on meta, while construction-time scalars (Hiera's linspace().item()) still
        # compute on the CPU: torch.device("meta") alone fails inside sam2
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            model = LensModel(cfg)
    else:
        from lens_ros.model.build import whole_parameters

        with whole_parameters(), torch.device(device or "cpu"):
            model = LensModel(cfg)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def build_preset(name: str, seed: int | None = 0):
    """A random-weight model of preset ``name`` with its processor and inference defaults.

    Returns (LensModel in eval mode, ImageOnlyQwen2_5_VLProcessor, InferenceConfig). The
    generation config stops on ``<|im_end|>`` or ``<|endoftext|>`` and pads with
    ``<|endoftext|>``, as Qwen2.5-VL releases do. ``seed`` seeds torch first (None: use the
    current RNG state). Raises ValueError for a preset without a local tokenizer.
    """
    from lens_ros.model.config import InferenceConfig
    from lens_ros.model.processing import build_processor

    preset = get_preset(name)
    if preset.make_tokenizer is None:
        raise ValueError(f"preset {name!r} has no local tokenizer; its weights and tokenizer come "
                         "from the released checkpoint (see docs/model.md)")
    tokenizer = preset.make_tokenizer()
    cfg = preset.config()
    _check_tokenizer(tokenizer, cfg)
    model = build_lens(cfg, seed=seed)
    gen = model.generation_config
    gen.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id]
    gen.pad_token_id = gen.bos_token_id = tokenizer.pad_token_id
    processor = build_processor(tokenizer, cfg.processing.min_pixels, cfg.processing.max_pixels,
                                cfg.vision_config["patch_size"],
                                cfg.vision_config["spatial_merge_size"])
    return model, processor, InferenceConfig().replace(**preset.inference)


def save_preset_checkpoint(name: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a random-weight checkpoint of preset ``name`` (config, safetensors, tokenizer,
    processor, generation and inference configs) to ``directory``; returns it as a Path."""
    from lens_ros.model.checkpoints import save_checkpoint

    model, processor, inference = build_preset(name, seed)
    return save_checkpoint(model, directory, processor=processor, inference=inference)


def _check_tokenizer(tokenizer, cfg: LensConfig) -> None:
    ids = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
           "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}
    for key, token in ids.items():
        if tokenizer.convert_tokens_to_ids(token) != getattr(cfg, key):
            raise ValueError(f"config {key}={getattr(cfg, key)} but the tokenizer has {token} at "
                             f"{tokenizer.convert_tokens_to_ids(token)}")
    if len(tokenizer) > cfg.text_config["vocab_size"]:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than vocab_size "
                         f"{cfg.text_config['vocab_size']}")
