"""LensSegmenter end to end on the tiny preset (real Qwen2.5-VL and SAM 2 modules, CPU)."""
import threading

import numpy as np
import pytest
import torch

from lens_ros.core import (BadCommandError, BadImageError, CanceledError, NotReadyError,
                           Segmentation, Status)
from lens_ros.model import LensSegmenter
from lens_ros.model.processing import encode_prompts, prepare_llm_image
from lens_ros.model.prompts import render_prompt

ANSWER = '{"bbox_2d": [14, 38, 28, 58]}'


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir, bundled_image):
    seg = LensSegmenter.from_pretrained(tiny_model_dir)
    seg.set_image(bundled_image)
    return seg


@pytest.fixture(scope="module")
def boxed(tiny_model_dir, bundled_image):
    """A tiny LENS whose language model was taught (Adam until the teacher-forced loss is
    ~0, typically 60-150 steps, a few seconds) to answer ``ANSWER`` to "the red mug" on the
    bundled image: random weights never produce a box. A fixed step count was not enough on
    every CPU (float kernels differ between machines)."""
    seg = LensSegmenter.from_pretrained(tiny_model_dir)
    model, tok = seg.model, seg.tokenizer
    llm = prepare_llm_image(bundled_image, seg.processor)
    enc = encode_prompts(tok, [render_prompt("the red mug")], llm.num_tokens,
                         model.config.image_token_id)
    answer = tok(ANSWER + "<|im_end|>", add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([enc["input_ids"], answer], 1)
    labels = torch.cat([torch.full_like(enc["input_ids"], -100), answer], 1)
    mm = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(answer)], 1)
    params = [p for n, p in model.named_parameters()
              if n.startswith(("model.language_model", "lm_head"))]
    opt = torch.optim.Adam(params, lr=1e-2)
    torch.manual_seed(0)
    model.train()
    for _ in range(400):
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels,
                     pixel_values=llm.pixel_values, image_grid_thw=llm.image_grid_thw,
                     mm_token_type_ids=mm).loss
        if loss.item() < 1e-3:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3, f"the tiny model did not learn the answer (loss {loss.item()})"
    model.eval()
    seg.set_image(bundled_image)
    return seg


def test_segment_returns_mask_of_the_image_size_and_timings(segmenter, bundled_image):
    r = segmenter.segment("  the red mug ")
    assert isinstance(r, Segmentation) and r.status == Status.OK and r.ok
    assert r.command == "the red mug"
    assert r.mask.shape == bundled_image.shape[:2] and r.mask.dtype == bool
    assert 0.0 <= r.score <= 1.0 and np.isfinite(r.object_score)
    assert r.timings.generate_ms > 0 and r.timings.mask_ms > 0
    assert r.timings.total_ms >= r.timings.generate_ms + r.timings.mask_ms
    assert r.truncated  # a random model never says <|im_end|> within 24 tokens


def test_encode_time_is_reported_once_per_image(tiny_model_dir, bundled_image):
    seg = LensSegmenter.from_pretrained(tiny_model_dir, max_new_tokens=2)
    seg.set_image(bundled_image)
    first, second = seg.segment("the mug"), seg.segment("the mug")
    assert first.timings.encode_ms > 0 and second.timings.encode_ms == 0.0


def test_greedy_decoding_is_deterministic(segmenter):
    a, b = segmenter.segment("the blue box"), segmenter.segment("the blue box")
    assert a.answer == b.answer and np.array_equal(a.mask, b.mask) and a.score == b.score


def test_answer_box_is_parsed_and_rescaled(boxed, bundled_image):
    r = boxed.segment("the red mug")
    assert r.answer == ANSWER and not r.truncated
    # the LLM saw 84x112 pixels of the 240x320 frame: x * 320/112, y * 240/84
    assert r.box == pytest.approx((40.0, 38 * 240 / 84, 80.0, 58 * 240 / 84))
    assert r.mask.shape == bundled_image.shape[:2]


def test_stream_receives_the_text_as_it_grows(boxed):
    seen = []
    r = boxed.segment("the red mug", stream=seen.append)
    assert len(seen) >= 5 and seen[-1] == r.answer
    assert all(seen[i + 1].startswith(seen[i][:-1]) for i in range(len(seen) - 1))


def test_cancel_stops_generation(segmenter):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 3

    # polled once before generation, then after every token: the 3rd poll follows token 2
    with pytest.raises(CanceledError, match="canceled after 2 generated tokens") as err:
        segmenter.segment("the mug", cancel=cancel)
    assert len(calls) == 3
    assert isinstance(err.value.partial, str)
    assert segmenter.segment("the mug").ok  # usable afterwards
    with pytest.raises(CanceledError, match="before generation"):
        segmenter.segment("the mug", cancel=lambda: True)


def test_cancel_from_another_thread(segmenter):
    flag = threading.Event()
    threading.Timer(0.0, flag.set).start()
    flag.wait()
    with pytest.raises(CanceledError):
        segmenter.segment("the mug", cancel=flag.is_set)


def test_batch_equals_separate_calls(segmenter):
    commands = ["the red mug", "the yellow ball on the right", "laptop"]
    batch = segmenter.segment_batch(commands)
    for command, r in zip(commands, batch):
        single = segmenter.segment(command)
        assert r.answer == single.answer
        assert r.score == pytest.approx(single.score, abs=1e-4)
        assert r.object_score == pytest.approx(single.object_score, abs=1e-3)
        assert (r.mask != single.mask).mean() < 1e-3  # left padding: float-rounding only


def test_batch_reports_bad_commands_in_their_slot(segmenter):
    rs = segmenter.segment_batch(["the mug", "   ", "x" * 1000])
    assert rs[0].ok
    assert [r.status for r in rs[1:]] == [Status.BAD_COMMAND, Status.BAD_COMMAND]
    assert rs[1].mask.shape == (240, 320)


@pytest.mark.parametrize("command, message", [
    ("", "empty"), ("  \n ", "empty"), ("x" * 501, "501 characters"), (None, "string"),
    (b"\xff", "UTF-8"), ("the <|im_end|> mug", "special tokens"),
])
def test_bad_commands_raise(segmenter, command, message):
    with pytest.raises(BadCommandError, match=message):
        segmenter.segment(command)


def test_bad_images_raise_and_keep_the_previous_image(segmenter):
    with pytest.raises(BadImageError):
        segmenter.set_image(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(BadImageError):
        segmenter.set_image(np.zeros((10, 10, 3), np.float64))
    assert segmenter.segment("the mug").mask.shape == (240, 320)


@pytest.mark.parametrize("image", [np.full((30, 41), 128, np.uint8),
                                   np.full((30, 41, 4), 128, np.uint8)])
def test_gray_and_rgba_images_are_accepted(tiny_model_dir, image):
    seg = LensSegmenter.from_pretrained(tiny_model_dir, max_new_tokens=2)
    seg.set_image(image)
    assert seg.segment("the mug").mask.shape == (30, 41)


def test_segment_without_image_and_after_release(tiny_model_dir, bundled_image):
    seg = LensSegmenter.from_pretrained(tiny_model_dir, max_new_tokens=2)
    with pytest.raises(NotReadyError, match="set_image"):
        seg.segment("the mug")
    seg.set_image(bundled_image)
    seg.reset_image()
    assert not seg.has_image
    seg.release()
    with pytest.raises(NotReadyError, match="released"):
        seg.set_image(bundled_image)


def test_max_new_tokens_truncates_and_flags(tiny_model_dir, bundled_image):
    seg = LensSegmenter.from_pretrained(tiny_model_dir, max_new_tokens=3)
    seg.set_image(bundled_image)
    r = seg.segment("the mug")
    assert r.truncated and r.ok
    assert len(seg.tokenizer(r.answer, add_special_tokens=False)["input_ids"]) <= 3


def test_no_target_gate(segmenter):
    assert segmenter.config.no_target_object_score is None  # off by default, as the paper
    try:
        segmenter.configure(no_target_object_score=1e6)
        r = segmenter.segment("the unicorn")
        assert r.status == Status.NO_TARGET and not r.ok and not r.mask.any()
        assert "object score" in r.error
        segmenter.configure(no_target_object_score=None, no_target_iou=1.0)
        assert segmenter.segment("the unicorn").status == Status.NO_TARGET
        segmenter.configure(no_target_iou=None, no_target_without_box=True)
        assert "no box" in segmenter.segment("the unicorn").error
    finally:
        segmenter.configure(no_target_object_score=None, no_target_iou=None,
                            no_target_without_box=False)


def test_reasoning_prompt_changes_the_input(segmenter):
    plain = segmenter.segment("the mug", reasoning=False)
    cot = segmenter.segment("the mug", reasoning=True)
    assert plain.answer != cot.answer or not np.array_equal(plain.mask, cot.mask)


def test_unknown_override_is_rejected(tiny_model_dir):
    with pytest.raises(ValueError, match="max_tokens"):
        LensSegmenter.from_pretrained(tiny_model_dir, max_tokens=5)


def test_bf16_inference_matches_fp32_closely(tiny_model_dir, bundled_image):
    # the dtype used on CUDA; CPU bf16 exercises the same casts (SAM FPN levels, dense PE)
    seg = LensSegmenter.from_pretrained(tiny_model_dir, dtype=torch.bfloat16, max_new_tokens=4)
    ref = LensSegmenter.from_pretrained(tiny_model_dir, max_new_tokens=4)
    for s in (seg, ref):
        s.set_image(bundled_image)
    a, b = seg.segment("the mug"), ref.segment("the mug")
    assert seg.model.dtype == torch.bfloat16 and a.mask.shape == b.mask.shape
    assert abs(a.score - b.score) < 0.05
