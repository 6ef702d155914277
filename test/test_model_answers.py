"""Answer parsing: boxes only from the answer, never from the prompt or the thinking."""
import pytest

from lens_ros.model.answers import box_is_valid, find_box, parse_answer, rescale_box

# (completion text, expected box in LLM-image pixels or None, why)
CASES = [
    ('```json\n[{"bbox_2d": [12, 34, 156, 178], "label": "red mug"}]\n```',
     (12.0, 34.0, 156.0, 178.0), "Qwen2.5-VL JSON grounding, no tags (plain template)"),
    ('<think>The mug is left.</think><answer>{"bbox_2d": [5, 6, 70, 80]}</answer>',
     (5.0, 6.0, 70.0, 80.0), "CoT format"),
    ("<think>candidates [1, 2, 3, 4] and [9, 9, 9, 9]</think><answer>[10,20,30,40]</answer>",
     (10.0, 20.0, 30.0, 40.0), "boxes inside <think> are ignored"),
    ("<think>first guess (1, 2, 3, 4)</think> the mug is at [11.5, 22.25, 33, 44]",
     (11.5, 22.25, 33.0, 44.0), "no <answer> tag: text outside <think> is used"),
    ("<answer>(10, 20, 30, 40)</answer>", (10.0, 20.0, 30.0, 40.0), "4-tuple"),
    ("<|box_start|>(10,20),(30,40)<|box_end|>", (10.0, 20.0, 30.0, 40.0), "Qwen2-VL pair syntax"),
    ("<answer>(10, 20), (30, 40)</answer>", (10.0, 20.0, 30.0, 40.0), "corner pairs"),
    ("<answer>[-3, 0, 12.5, 7]</answer>", (-3.0, 0.0, 12.5, 7.0), "negative and decimal kept"),
    ('<answer>{"point_2d": [5, 6], "bbox_2d": [1, 2, 3, 4]}</answer>',
     (1.0, 2.0, 3.0, 4.0), "bbox_2d preferred over other lists"),
    ("<answer>[1, 2, 3]</answer>", None, "3 numbers are not a box"),
    ("<answer>[a, b, c, d]</answer>", None, "malformed numbers"),
    ("<answer>there is no such object</answer>", None, "refusal: no box"),
    ("<think>it is at [1, 2, 3, 4] maybe", None, "unclosed <think> (truncated): nothing answered"),
    ("<think>x</think><answer>[1, 2, 3, 4", None, "unclosed list"),
    ("<think>x</think><answer>[7, 8, 9, 10] then", (7.0, 8.0, 9.0, 10.0), "unclosed <answer>"),
    ("", None, "empty completion"),
]


@pytest.mark.parametrize("text, box, why", CASES, ids=[c[2] for c in CASES])
def test_parse_answer_table(text, box, why):
    assert parse_answer(text).box == box, why


def test_parse_answer_splits_reasoning_and_answer():
    parsed = parse_answer("<think> the red one </think>\n<answer> [1, 2, 3, 4] </answer>")
    assert parsed.reasoning == "the red one"
    assert parsed.answer == "[1, 2, 3, 4]"


def test_find_box_follows_the_reference_pattern_order():
    # the reference tries [..] before (..,..,..,..) before pairs, each with re.search
    assert find_box("(1, 2, 3, 4) [5, 6, 7, 8]") == (5.0, 6.0, 7.0, 8.0)
    assert find_box("(1, 2), (3, 4) (5, 6, 7, 8)") == (5.0, 6.0, 7.0, 8.0)


def test_rescale_box_per_axis():
    # 476x644 LLM image of a 480x640 frame (smart_resize)
    box = rescale_box((0.0, 0.0, 644.0, 476.0), (476, 644), (480, 640))
    assert box == pytest.approx((0.0, 0.0, 640.0, 480.0))


@pytest.mark.parametrize("box, ok", [((0, 0, 10, 10), True), ((5, 5, 5, 9), False),
                                     ((-1, 0, 4, 4), False), ((0, 0, 33, 4), False),
                                     (None, False)])
def test_box_is_valid(box, ok):
    assert box_is_valid(box, (20, 32)) is ok


def test_find_boxes_returns_every_json_box_in_order():
    from lens_ros.model.answers import find_boxes

    text = '{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5.5, 6, 7, 8]}'
    assert find_boxes(text) == [(1.0, 2.0, 3.0, 4.0), (5.5, 6.0, 7.0, 8.0)]
    assert find_boxes("[1, 2, 3, 4]") == []  # only the JSON form lists several objects
