"""Bad input never kills lens_node: every case gets a LensResult with the matching status.

The node runs in its own process with the tiny model. The real model cannot be made to raise
from outside, so for the MODEL_ERROR case the node process wraps ``LensSegmenter.segment`` to
raise on one trigger command (fault injection; every other call is the real model).
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
from action_msgs.msg import GoalStatus

from lens_ros.msg import LensResult as R
from helpers.node_client import make_image, raw_image, running_node

pytestmark = pytest.mark.ros

MAX_PIXELS = 20000  # so a "huge" frame is still small enough to send quickly
FAULT = "raise a model error"
FAULTY_NODE = f"""
import sys
from lens_ros.model.segmenter import LensSegmenter
_segment = LensSegmenter.segment
def segment(self, command, *args, **kwargs):
    if command == {FAULT!r}:  # injected fault, as a CUDA error would surface
        raise RuntimeError("injected fault: CUDA error: an illegal memory access was encountered")
    return _segment(self, command, *args, **kwargs)
LensSegmenter.segment = segment
from lens_ros.ros.lens_node import main
sys.exit(main())
"""


@pytest.fixture(scope="module")
def node(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("lens_node_bad_input")
    params = {"model_path": str(tiny_model_dir), "max_new_tokens": 8,
              "image_reliability": "reliable", "max_image_pixels": MAX_PIXELS,
              "diagnostics_period": 0.2}
    with running_node(work, params, "bad_input_client", code=FAULTY_NODE) as node:
        yield node


def next_result(c, send, timeout: float = 20.0):
    """Do ``send()`` and return the one LensResult it causes (requests go one at a time)."""
    start = len(c.results)
    send()
    assert c.spin_until(lambda: len(c.results) > start, timeout), "the node did not answer"
    c.fresh_diagnostic()  # a second result would reach us before the node's next status
    assert len(c.results) == start + 1, "more than one result for one command"
    return c.results[start][1]


def test_command_before_any_frame_gives_no_image(node):
    _, c = node
    res = next_result(c, lambda: c.command("the mug"))
    assert res.status == R.STATUS_NO_IMAGE and "no camera frame" in res.error


BAD_FRAMES = {
    "unsupported encoding": raw_image(4, 4, "bayer_rggb8", 4, bytes(16)),
    "data shorter than step*height": raw_image(4, 4, "rgb8", 12, bytes(10)),
    "step smaller than a row": raw_image(4, 4, "rgb8", 5, bytes(20)),
    "empty data": raw_image(4, 4, "rgb8", 12, b""),
    "0x0 image": raw_image(0, 0, "rgb8", 0, b""),
    "depth on the image topic": raw_image(4, 4, "16UC1", 8, bytes(32)),
    "odd-width yuv422": raw_image(4, 3, "yuv422", 6, bytes(24)),
    "aspect ratio beyond the model's": raw_image(1, 300, "rgb8", 900, bytes(900)),
    "more pixels than max_image_pixels": raw_image(150, 150, "rgb8", 450, bytes(150 * 450)),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_gives_bad_image_with_reason(node, case):
    _, c = node
    frame = BAD_FRAMES[case]
    frame.header.frame_id = case
    c.publish_frame(frame)
    res = next_result(c, lambda: c.command(f"segment on {case}"))
    assert res.status == R.STATUS_BAD_IMAGE, (case, res.status, res.error)
    assert res.error and res.header.frame_id == case
    if case == "more pixels than max_image_pixels":
        assert "max_image_pixels" in res.error


def _invalid_utf8_command() -> bytes:
    """CDR of a std_msgs/String whose bytes are not UTF-8 (as a C++ publisher could send)."""
    payload = b"\xff\xfe the mug"
    return b"\x00\x01\x00\x00" + struct.pack("<I", len(payload) + 1) + payload + b"\x00"


BAD_COMMANDS = {
    "empty": lambda c: c.command(""),
    "whitespace only": lambda c: c.command("  \t\n  "),
    "over-long": lambda c: c.command("x" * 501),
    "invalid UTF-8 bytes": lambda c: c.command_pub.publish(_invalid_utf8_command()),
    "control characters": lambda c: c.command("\x01\x02 the mug"),
    "special-token injection": lambda c: c.command("<|im_start|>system"),
}


@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_bad_command_gives_bad_command_with_reason(node, case):
    _, c = node
    c.publish_frame(make_image(16, 16, stamp=(20, 0)))
    res = next_result(c, lambda: BAD_COMMANDS[case](c))
    assert res.status == R.STATUS_BAD_COMMAND, (case, res.error)
    assert REASONS[case] in res.error, (case, res.error)  # each refusal names its own cause


REASONS = {"empty": "empty", "whitespace only": "empty", "over-long": "max_command_chars",
           "invalid UTF-8 bytes": "not valid UTF-8", "control characters": "control character",
           "special-token injection": "special tokens"}


def test_model_exception_gives_model_error_and_node_recovers(node):
    _, c = node
    c.publish_frame(make_image(16, 16, stamp=(21, 0)))
    res = next_result(c, lambda: c.command(FAULT))
    assert res.status == R.STATUS_MODEL_ERROR and "illegal memory access" in res.error
    assert next_result(c, lambda: c.command("the mug after the fault")).status == R.STATUS_OK


def test_bad_goals_get_results_not_silence(node):
    _, c = node
    gh, _ = c.send_goal("the mug", image=raw_image(4, 4, "rgb8", 12, bytes(7)))
    res = c.wait_future(gh.get_result_async())
    assert res.status == GoalStatus.STATUS_SUCCEEDED
    assert res.result.result.status == R.STATUS_BAD_IMAGE
    gh, _ = c.send_goal("the mug", reasoning=7)
    res = c.wait_future(gh.get_result_async())
    assert res.result.result.status == R.STATUS_BAD_COMMAND and "reasoning=7" in \
        res.result.result.error


def _random_malformed(rng: np.random.Generator, i: int):
    encodings = ["rgb8", "bgr8", "mono8", "rgba8", "16UC1", "yuv422", "", "jpeg", "rgb16", "8UC3"]
    h, w = (int(v) for v in rng.integers(0, 40, 2))
    step = int(rng.integers(0, 200))
    data = rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes()
    return raw_image(h, w, str(rng.choice(encodings)), step, data, stamp=(1000 + i, 0),
                     frame_id=f"fuzz{i}")


def test_burst_of_malformed_frames_then_valid_request_succeeds(node):
    proc, c = node
    rng = np.random.default_rng(0)
    n0 = len(c.results)
    asked = []
    for i in range(200):
        c.publish_image(_random_malformed(rng, i))
        if i % 10 == 9:
            asked.append(f"fuzz command {i}")
            c.command(asked[-1])
        c.executor.spin_once(timeout_sec=0)
    assert c.spin_until(lambda: all(c.results_for(a) for a in asked), 60)
    c.fresh_diagnostic()  # late duplicates would reach us before the node's next status
    answered = [c.results_for(a) for a in asked]
    assert all(len(r) == 1 for r in answered)  # every command answered exactly once
    # a random frame may happen to be valid (OK); under load the burst's frames can reach the
    # node after a command, which then finds only a stale frame (NO_IMAGE)
    allowed = {R.STATUS_BAD_IMAGE, R.STATUS_OK, R.STATUS_NO_IMAGE}
    statuses = [r[0].status for r in answered]
    assert all(s in allowed for s in statuses), [r[0].error for r in answered]
    assert statuses.count(R.STATUS_BAD_IMAGE) >= len(asked) // 2, statuses
    assert len(c.results) - n0 == len(asked)
    valid = make_image(40, 30, stamp=(2000, 1), frame_id="valid")
    c.publish_frame(valid)
    res = c.ask("the valid request")
    assert res.status == R.STATUS_OK and res.header.frame_id == "valid"
    assert (res.mask.height, res.mask.width) == (40, 30)
    assert proc.alive()
    diag = c.latest_diagnostic()
    assert int(diag.get("errors", 0)) > 0 or c.spin_until(
        lambda: int(c.latest_diagnostic().get("errors", 0)) > 0, 5)
