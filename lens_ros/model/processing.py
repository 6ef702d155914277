"""Image and prompt preparation for LENS: input checks, smart_resize, the Qwen2.5-VL processor
without torchvision, the SAM input tensor and prompt tokenisation with the image placeholder.

Frames: every image here is HxWx3 uint8 RGB, values in [0, 255], (row, column) = (y, x) pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

from lens_ros.core import BadImageError
from lens_ros.model.prompts import CHAT_TEMPLATE

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"


#: the largest long-side / short-side ratio a frame may have (the Qwen2.5-VL processor's limit)
MAX_ASPECT = 200


def check_frame_shape(height: int, width: int) -> None:
    """The one shape policy for frames given to the model: ``BadImageError`` unless served.

    Every frame with both sides >= 1 pixel and an aspect ratio (long / short side) of at most
    :data:`MAX_ASPECT` is served: :func:`smart_resize` fits it into what the processor accepts.
    ``LensSegmenter.set_image`` applies it, so the node, its action, ``lens-bag run`` and
    ``lens-eval`` refuse the same frames with the same reason (``BAD_IMAGE``); a pixel-count limit
    (the node's ``max_image_pixels``) is the caller's.
    """
    if height <= 0 or width <= 0:
        raise BadImageError(f"image is empty: {width}x{height} pixels (width x height)")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT:
        raise BadImageError(f"image of {width}x{height} pixels (width x height) has aspect ratio "
                            f"{ratio:.0f}, more than {MAX_ASPECT}; crop it first")


def to_rgb_array(image) -> np.ndarray:
    """Check and convert a frame to an HxWx3 uint8 RGB array (a new C-contiguous array).

    Accepts HxW (gray), HxWx1, HxWx3 (RGB) and HxWx4 (RGBA, alpha dropped) uint8 arrays, or a
    PIL image. Raises BadImageError naming the problem (empty, wrong dtype, wrong shape).
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise BadImageError(f"image must be a numpy array (HxWx3 uint8 RGB), got "
                            f"{type(image).__name__}")
    if image.dtype != np.uint8:
        raise BadImageError(f"image dtype must be uint8 with values 0..255, got {image.dtype}; "
                            "convert first, e.g. (img * 255).clip(0, 255).astype(np.uint8)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise BadImageError(f"image shape must be HxW, HxWx1, HxWx3 or HxWx4, got {image.shape}")
    check_frame_shape(image.shape[0], image.shape[1])
    return np.ascontiguousarray(image)


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 3136,
                 max_pixels: int = 1_000_000) -> tuple[int, int]:
    """``qwen_vl_utils.smart_resize``: (h, w) multiples of ``factor``, area in [min, max].

    For thin frames (one side near or below ``factor``) the reference formula can return an
    area above ``max_pixels`` or an aspect ratio above :data:`MAX_ASPECT` (the short side is
    clamped up to ``factor``); the long side is then cut so that the result stays inside both,
    which makes the processor's own resize a no-op. Other shapes get the reference result.

    >>> smart_resize(480, 640)
    (476, 644)
    >>> smart_resize(5, 1000, max_pixels=112 * 112)
    (28, 448)
    """
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    short, long_ = min(h_bar, w_bar), max(h_bar, w_bar)
    cap = min(MAX_ASPECT * short, max_pixels // short)  # longest side allowed with this short one
    if long_ > cap:
        long_ = max(factor, cap // factor * factor)
        h_bar, w_bar = (short, long_) if h_bar <= w_bar else (long_, short)
    return h_bar, w_bar


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video processor, whose type check needs torchvision.

    ``ProcessorMixin`` reads its attributes from the ``__init__`` signature, so leaving out
    ``video_processor`` is enough. Load saved folders (ours or a real Qwen2.5-VL/LENS one) with
    ``ImageOnlyQwen2_5_VLProcessor.from_pretrained(dir)``; ``AutoProcessor`` would return only
    the tokenizer (the saved ``processor_class`` is this subclass, which AutoProcessor does not
    know), and ``Qwen2_5_VLProcessor`` itself needs torchvision for its video processor.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = IMAGE_TOKEN
        self.video_token = VIDEO_TOKEN
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def build_processor(tokenizer, min_pixels: int, max_pixels: int, patch_size: int = 14,
                    merge_size: int = 2) -> ImageOnlyQwen2_5_VLProcessor:
    """A processor whose own resize is a no-op on images already smart-resized to these bounds.

    ``patch_size`` / ``merge_size`` must match the vision tower's config (14 / 2 in Qwen2.5-VL)."""
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)},
        patch_size=int(patch_size), merge_size=int(merge_size))
    return ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=CHAT_TEMPLATE)


def processor_pixel_bounds(processor) -> tuple[int, int]:
    """(min_pixels, max_pixels) of a processor's image processor."""
    ip = processor.image_processor
    size = getattr(ip, "size", None) or {}
    lo = size.get("shortest_edge", getattr(ip, "min_pixels", None) or 3136)
    hi = size.get("longest_edge", getattr(ip, "max_pixels", None) or 1_000_000)
    return int(lo), int(hi)


@dataclass
class LlmImage:
    """An image prepared for the language model.

    Attributes:
      pixel_values (torch.Tensor): (N, C*T*P*P) float32 patches, N = t*h*w of the grid.
      image_grid_thw (torch.Tensor): (1, 3) int64 patch grid (t, h, w).
      resized_hw (tuple[int, int]): (H', W') of the smart-resized image the model sees; boxes in
        the answer are in these pixels.
      num_tokens (int): number of ``<|image_pad|>`` tokens in the prompt (h*w / merge**2).
    """

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    resized_hw: tuple[int, int]
    num_tokens: int


def prepare_llm_image(rgb: np.ndarray, processor, factor: int = 28,
                      min_pixels: int | None = None, max_pixels: int | None = None) -> LlmImage:
    """Smart-resize with PIL's bicubic filter (as LENS' demo), then run the image processor.

    The area bounds default to the processor's; given bounds are clamped into the processor's
    so that its own resize stays a no-op (a released Qwen processor allows 3136..12845056 and
    LENS pre-resizes to at most 1e6 pixels).
    """
    lo, hi = processor_pixel_bounds(processor)
    lo = max(lo, min_pixels) if min_pixels else lo
    hi = min(hi, max_pixels) if max_pixels else hi
    h, w = smart_resize(rgb.shape[0], rgb.shape[1], factor, lo, hi)
    pil = Image.fromarray(rgb).resize((w, h), Image.BICUBIC)
    out = processor.image_processor(images=[pil], return_tensors="pt")
    grid = out["image_grid_thw"]
    patch = int(getattr(processor.image_processor, "patch_size", 14))
    if (int(grid[0, 1]) * patch, int(grid[0, 2]) * patch) != (h, w):
        raise BadImageError(f"the image processor resized {w}x{h} again to "
                            f"{int(grid[0, 2]) * patch}x{int(grid[0, 1]) * patch}; its size "
                            f"bounds {lo}..{hi} do not contain the smart_resize result "
                            f"of {rgb.shape[1]}x{rgb.shape[0]}")
    merge = int(getattr(processor.image_processor, "merge_size", 2))
    return LlmImage(pixel_values=out["pixel_values"], image_grid_thw=grid, resized_hw=(h, w),
                    num_tokens=int(grid.prod().item()) // merge ** 2)


def prepare_sam_image(rgb: np.ndarray, size: int, mean: list[float],
                      std: list[float]) -> torch.Tensor:
    """SAM input: squash to size x size with PIL bilinear (torchvision's PIL path in LENS' demo),
    normalise on the 0..255 scale. Returns (1, 3, size, size) float32."""
    pil = Image.fromarray(rgb).resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32)).permute(2, 0, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x - m) / s).unsqueeze(0)


def encode_prompts(tokenizer, texts: list[str], num_image_tokens: int,
                   image_token_id: int) -> dict[str, torch.Tensor]:
    """Tokenise chat-templated prompts, expanding the one ``<|image_pad|>`` to the image's tokens.

    This is what the processor does, without re-processing the image for every command.
    Returns left-padded ``input_ids`` (B, L) int64, ``attention_mask`` (B, L) int64 and
    ``mm_token_type_ids`` (B, L) int (1 on image tokens), as the processor would.
    """
    expanded = [t.replace(IMAGE_TOKEN, IMAGE_TOKEN * num_image_tokens) for t in texts]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(expanded, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    ids = enc["input_ids"]
    return {"input_ids": ids, "attention_mask": enc["attention_mask"],
            "mm_token_type_ids": (ids == image_token_id).long()}
