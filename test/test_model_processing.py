"""Prompts (byte-exact), smart_resize, input conversion and the processor without torchvision."""
import numpy as np
import pytest
import torch
from PIL import Image

from lens_ros.core import BadImageError
from lens_ros.model.processing import (build_processor, encode_prompts, prepare_llm_image,
                                       prepare_sam_image, smart_resize, to_rgb_array)
from lens_ros.model.prompts import (CHAT_TEMPLATE, PLAIN_TEMPLATE, REASONING_TEMPLATE,
                                    SYSTEM_PROMPT, build_messages, render_prompt)


def test_prompts_are_byte_exact():
    assert SYSTEM_PROMPT == "You are a helpful assistant. "
    assert PLAIN_TEMPLATE.format(question="red mug") == (
        "Output the bounding box of the red mug in the image.")
    assert REASONING_TEMPLATE.format(question="red mug") == (
        'Locate "red mug", report the bbox coordinates in JSON format.Compare the difference '
        "between objects and find the most closely matched one.Output the thinking process in "
        "<think> </think> and final answer in <answer> </answer> tags.Output the one bbox inside "
        "the interested object in JSON format.i.e., <think>thinking process here</think>"
        "<answer>answer here</answer>")


@pytest.fixture(scope="module")
def processor():
    from lens_ros.model.tokenizer import build_bpe_tokenizer

    return build_processor(build_bpe_tokenizer(), 3136, 112 * 112)


@pytest.mark.parametrize("reasoning", [False, True])
def test_render_prompt_equals_the_chat_template(processor, reasoning):
    rendered = processor.apply_chat_template(build_messages("the cup", reasoning),
                                             tokenize=False, add_generation_prompt=True)
    assert rendered == render_prompt("the cup", reasoning)
    assert rendered.startswith("<|im_start|>system\nYou are a helpful assistant. <|im_end|>\n"
                               "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>")
    assert processor.chat_template == CHAT_TEMPLATE


@pytest.mark.parametrize("hw, expected", [
    ((480, 640), (476, 644)),        # COCO frame, inside the bounds: rounded to 28
    ((2000, 3000), (812, 1204)),     # above 1e6 pixels: scaled down, floor to 28
    ((10, 10), (56, 56)),            # below 3136 pixels: scaled up, ceil to 28
])
def test_smart_resize_matches_qwen_vl_utils(hw, expected):
    h, w = smart_resize(*hw)
    assert (h, w) == expected
    assert h % 28 == 0 and w % 28 == 0 and 3136 <= h * w <= 1_000_000


def test_encode_prompts_equals_the_processor(processor):
    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    llm = prepare_llm_image(rgb, processor)
    assert llm.resized_hw == (84, 112) and llm.num_tokens == 12
    texts = [render_prompt("the cup"), render_prompt("the big blue box on the left")]
    pil = Image.fromarray(rgb).resize((112, 84), Image.BICUBIC)
    processor.tokenizer.padding_side = "left"
    ref = processor(text=texts, images=[pil, pil], return_tensors="pt", padding=True)
    mine = encode_prompts(processor.tokenizer, texts, llm.num_tokens,
                          processor.tokenizer.convert_tokens_to_ids("<|image_pad|>"))
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        assert torch.equal(ref[key], mine[key]), key
    assert torch.equal(ref["pixel_values"][:48], llm.pixel_values)


def test_sam_input_is_squashed_and_normalised():
    rgb = np.full((30, 50, 3), (123, 116, 103), dtype=np.uint8)
    x = prepare_sam_image(rgb, 64, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    assert x.abs().max() < 0.02  # the ImageNet mean maps to ~0


@pytest.mark.parametrize("image, shape", [
    (np.zeros((5, 7), np.uint8), (5, 7, 3)),
    (np.zeros((5, 7, 1), np.uint8), (5, 7, 3)),
    (np.zeros((5, 7, 4), np.uint8), (5, 7, 3)),
    (Image.new("L", (7, 5)), (5, 7, 3)),
])
def test_gray_and_rgba_are_converted(image, shape):
    assert to_rgb_array(image).shape == shape


def test_rgba_drops_alpha_and_keeps_colours():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 7
    out = to_rgb_array(rgba)
    assert out[..., 0].min() == 200 and out[..., 1:].max() == 0


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    (np.zeros((5, 5, 3), np.float32), "dtype"),
    (np.zeros((5, 5, 2), np.uint8), "shape"),
    (np.zeros((2, 3, 4, 5), np.uint8), "shape"),
    (np.zeros((1, 500, 3), np.uint8), "aspect ratio"),
    ([[1, 2]], "numpy array"),
])
def test_bad_images_raise_bad_image_error(image, message):
    with pytest.raises(BadImageError, match=message):
        to_rgb_array(image)


def test_lens_bound_applies_inside_a_wider_qwen_processor():
    # a released Qwen2.5-VL processor allows up to 12845056 pixels; LENS resizes to <= 1e6 first
    from lens_ros.model.tokenizer import build_bpe_tokenizer

    qwen_like = build_processor(build_bpe_tokenizer(), 3136, 12845056)
    rgb = np.zeros((1200, 1600, 3), np.uint8)
    llm = prepare_llm_image(rgb, qwen_like, min_pixels=3136, max_pixels=1_000_000)
    assert llm.resized_hw == smart_resize(1200, 1600) == (840, 1148)
    assert llm.num_tokens == 840 * 1148 // 28 // 28
