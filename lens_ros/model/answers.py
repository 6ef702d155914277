"""Parsing LENS' generated text: the reasoning, the answer and its box.

The reference (``src/open_r1/utils.py:107-139`` ``parse_float_sequence_within``) searches the whole
decoded sequence, prompt included, with three regexes and falls back to ``[0, 0, 0, 0]``. Here:

- only the generated text is searched (never the prompt);
- when an ``<answer>`` tag is present, only the text inside the first ``<answer>...</answer>``
  (or to the end, when generation was cut before ``</answer>``) is searched; otherwise the text
  with every ``<think>...</think>`` block (closed or not) removed, so a box quoted while thinking
  is never taken for the answer;
- a ``"bbox_2d": [...]`` entry (Qwen2.5-VL's JSON grounding format) is preferred, then the
  reference's three patterns in its order: ``[a, b, c, d]``, ``(a, b, c, d)``, ``(a, b), (c, d)``;
- no box gives ``None``, never ``[0, 0, 0, 0]``.

Coordinates are absolute pixels of the smart-resized LLM image (``coord_norm_type=qwen2p5vl``);
:func:`rescale_box` maps them to the original image per axis, as ``demo.py:101-107`` does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"(-?\d+(?:\.\d+)?)"
_SEP = r",\s*"
#: ``"bbox_2d": [x1, y1, x2, y2]`` (JSON grounding answers)
_BBOX_2D = re.compile(r'"bbox_2d"\s*:\s*\[\s*' + _SEP.join([_NUM] * 4) + r"\s*\]")
#: the reference's patterns, tried in this order (first match wins)
_PATTERNS = (
    re.compile(r"\[\s*" + _SEP.join([_NUM] * 4) + r"\s*\]"),
    re.compile(r"\(\s*" + _SEP.join([_NUM] * 4) + r"\s*\)"),
    re.compile(r"\(\s*" + _NUM + _SEP + _NUM + r"\s*\)" + _SEP
               + r"\(\s*" + _NUM + _SEP + _NUM + r"\s*\)"),
)
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ParsedAnswer:
    """What the generated text says.

    Attributes:
      box (tuple | None): (x1, y1, x2, y2) floats in the pixels the model saw (LLM image), or
        None when the answer holds no box.
      reasoning (str): text inside the first ``<think>...</think>`` (stripped); "" without one.
      answer (str): text inside ``<answer>...</answer>`` when present, else the text without
        ``<think>`` blocks (stripped).
    """

    box: Box | None
    reasoning: str
    answer: str


def find_box(text: str) -> Box | None:
    """First box in ``text`` (``bbox_2d`` first, then the reference's three patterns), or None."""
    for pattern in (_BBOX_2D,) + _PATTERNS:
        match = pattern.search(text)
        if match:
            return tuple(float(g) for g in match.groups())  # type: ignore[return-value]
    return None


def find_boxes(text: str) -> list[Box]:
    """Every ``"bbox_2d": [...]`` box in ``text``, in order (multi-object answers such as the
    demo's "list the objects")."""
    return [tuple(float(g) for g in m) for m in _BBOX_2D.findall(text)]  # type: ignore[misc]


def parse_answer(completion: str) -> ParsedAnswer:
    """Split a completion (generated text only, special tokens removed) into its parts.

    >>> parse_answer('<think>x [1,2,3,4]</think><answer>{"bbox_2d": [5, 6, 7, 8]}</answer>').box
    (5.0, 6.0, 7.0, 8.0)
    """
    think = _THINK.search(completion)
    reasoning = think.group(1).strip() if think else ""
    answer = _ANSWER.search(completion)
    if answer is not None:
        body = answer.group(1)
    else:
        body = _THINK.sub("", completion)
    return ParsedAnswer(box=find_box(body), reasoning=reasoning, answer=body.strip())


def rescale_box(box: Box, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Box:
    """Scale x by ``to_w / from_w`` and y by ``to_h / from_h`` (floats, no rounding/clipping)."""
    sy = to_hw[0] / from_hw[0]
    sx = to_hw[1] / from_hw[1]
    x1, y1, x2, y2 = box
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def box_is_valid(box: Box | None, image_hw: tuple[int, int]) -> bool:
    """The demo's ``is_valid_box``: x1 < x2, y1 < y2, all >= 0, x2 <= W and y2 <= H."""
    if box is None:
        return False
    x1, y1, x2, y2 = box
    return 0 <= x1 < x2 <= image_hw[1] and 0 <= y1 < y2 <= image_hw[0]
