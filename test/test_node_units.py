"""Pieces of lens_node that need neither the model nor DDS: the frame buffer, the command check,
the overlay and the diagnostics status."""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from lens_ros.core import BadCommandError
from lens_ros.ros.diagnostics import build_status
from lens_ros.core import check_command_characters
from lens_ros.serving.requests import FrameBuffer, WorkerStats
from lens_ros.visualize import BOX_COLOR, MASK_COLOR, overlay


def test_frame_buffer_keeps_the_newest_and_finds_the_nearest():
    buf = FrameBuffer(3)
    for i, t in enumerate([1.0, 2.0, 3.0, 4.0]):
        buf.put(f"f{i}", t, busy=False)
    assert len(buf) == 3 and buf.newest().msg == "f3"
    assert buf.nearest(2.2).msg == "f1"  # f0 has left the buffer
    assert buf.nearest(0.0).msg == "f1" and buf.nearest(9.0).msg == "f3"
    assert FrameBuffer(2).nearest(1.0) is None


def test_frame_buffer_counts_a_drop_only_for_an_unused_frame_replaced_while_busy():
    buf = FrameBuffer(2)
    assert buf.put("a", 1.0, busy=True) is False  # nothing to replace
    assert buf.put("b", 2.0, busy=False) is False  # idle: not a drop
    assert buf.put("c", 3.0, busy=True) is True  # b was never used
    buf.newest().used = True
    assert buf.put("d", 4.0, busy=True) is False  # c was used


@pytest.mark.parametrize("text, reason", [("\ufffd\ufffd mug", "not valid UTF-8"),
                                          ("the \x00 mug", "control character"),
                                          ("\x07bell", "control character"),
                                          ("del\x7f", "control character")])
def test_undecodable_or_control_characters_are_refused_with_their_reason(text, reason):
    with pytest.raises(BadCommandError, match=reason):
        check_command_characters(text)


def test_ordinary_commands_pass_unchanged():
    for text in ["the red mug", "la tasse à gauche", "左边的杯子", "line\nbreak\ttab"]:
        assert check_command_characters(text) == text


def test_overlay_tints_the_mask_draws_the_box_and_keeps_the_input():
    img = np.full((60, 80, 3), 100, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[40:50, 10:20] = True
    out = overlay(img, mask, box=(30.0, 10.0, 70.0, 35.0), command="the mug", answer="there")
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 100).all()  # input untouched
    expected = np.full(3, 100) * 0.5 + np.array(MASK_COLOR) * 0.5
    assert np.abs(out[45, 15].astype(int) - expected).max() <= 1
    assert (out[55, 70] == 100).all()  # outside mask, box and text band
    assert tuple(out[35, 50]) == BOX_COLOR  # bottom edge of the box
    assert out[2:10].mean() < 100  # the text band is darkened


def test_overlay_accepts_gray_ignores_mismatched_masks_and_odd_text():
    gray = np.zeros((20, 30), np.uint8)
    out = overlay(gray, np.zeros((0, 0), bool), box=(-5, -5, 500, 500), command="ça ✓",
                  answer="x" * 500, status="NO_TARGET")
    assert out.shape == (20, 30, 3)
    assert overlay(np.zeros((0, 0, 3), np.uint8)).shape == (0, 0, 3)
    with pytest.raises(ValueError, match="HxWx3"):
        overlay(np.zeros((4, 4, 2), np.uint8))


def test_diagnostics_levels_follow_state_and_errors():
    model = {"loaded": True, "device": "cpu", "dtype": "float32"}
    stats = WorkerStats(results=3, errors=1, last_error="BAD_IMAGE: bad", last_result_error=True)
    warn = build_status("lens_node: inference", "active", model, stats, 2)
    assert warn.level == DiagnosticStatus.WARN and warn.message == "BAD_IMAGE: bad"
    values = {kv.key: kv.value for kv in warn.values}
    assert values["queue_length"] == "2" and values["errors"] == "1"
    assert values["model_device"] == "cpu" and warn.hardware_id == "cpu"
    stats.last_result_error = False
    assert build_status("n", "active", model, stats, 0).level == DiagnosticStatus.OK
    assert build_status("n", "inactive", model, None, 0).level == DiagnosticStatus.WARN
    err = build_status("n", "unconfigured", {}, None, 0, config_error="no checkpoint")
    assert err.level == DiagnosticStatus.ERROR and "no checkpoint" in err.message
