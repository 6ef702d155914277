"""lens_node end to end: the real node (console script) with the tiny model, over real DDS.

One node process serves the whole module. The tiny model has random weights: these tests check
plumbing (statuses, headers, sizes, counts), never the content of masks or text.
"""
from __future__ import annotations


import numpy as np
import pytest
from action_msgs.msg import GoalStatus

from lens_ros.msg import LensResult
from helpers.node_client import long_talker_checkpoint, make_image, running_node

pytestmark = pytest.mark.ros

SHORT = 8  # max_new_tokens for ordinary requests: the tiny model's speed is what we test with


@pytest.fixture(scope="module")
def node(tiny_model_dir, tmp_path_factory):
    """(process, client): lens_node with a tiny checkpoint that talks until max_new_tokens."""
    work = tmp_path_factory.mktemp("lens_node_e2e")
    ckpt = long_talker_checkpoint(tiny_model_dir, work)
    # reliable frames: these tests count on every frame arriving (the flood test uses the default)
    params = {"model_path": str(ckpt), "max_new_tokens": SHORT, "image_reliability": "reliable",
              "diagnostics_period": 0.2}
    with running_node(work, params, "e2e_client") as node:
        yield node


def _same_header(a, b) -> bool:
    return (a.stamp.sec, a.stamp.nanosec, a.frame_id) == (b.stamp.sec, b.stamp.nanosec, b.frame_id)


def test_command_on_frame_gives_result_mask_and_reasoning_with_its_header(node):
    proc, c = node
    img = make_image(37, 53, stamp=(123, 456), frame_id="cam_e2e")
    n_masks, n_reasoning = len(c.masks), len(c.reasonings)
    c.publish_frame(img)
    res = c.ask("the red mug")
    assert res.status == LensResult.STATUS_OK, res.error
    assert _same_header(res.header, img.header)
    assert (res.mask.height, res.mask.width, res.mask.encoding) == (37, 53, "mono8")
    assert set(np.unique(np.frombuffer(res.mask.data, np.uint8))) <= {0, 255}
    assert _same_header(res.mask.header, img.header)
    assert c.spin_until(lambda: len(c.masks) > n_masks and len(c.reasonings) > n_reasoning, 10)
    mask = c.masks[-1][1]
    assert _same_header(mask.header, img.header) and (mask.height, mask.width) == (37, 53)
    assert res.generate_ms > 0 and res.total_ms >= res.generate_ms


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "rgba8"])
def test_camera_encodings_are_converted(node, encoding):
    _, c = node
    img = make_image(30, 40, stamp=(7, len(encoding)), encoding=encoding, frame_id=encoding)
    c.publish_frame(img)
    res = c.ask(f"the object in {encoding}")
    assert res.status == LensResult.STATUS_OK, res.error
    assert _same_header(res.header, img.header) and (res.mask.height, res.mask.width) == (30, 40)


def test_debug_image_is_rendered_only_while_subscribed(node):
    _, c = node
    c.publish_frame(make_image(24, 32, stamp=(8, 1), frame_id="dbg"))
    c.ask("nobody watches")
    c.fresh_diagnostic()  # an overlay would reach us before the node's next status
    assert c.debug == []
    c.watch_debug_image()
    assert c.spin_until(lambda: c._debug_sub.get_publisher_count() > 0, 10)
    img = make_image(24, 32, stamp=(8, 2), frame_id="dbg")
    c.publish_frame(img)
    c.ask("somebody watches")
    assert c.spin_until(lambda: len(c.debug) > 0, 10)
    dbg = c.debug[-1][1]
    assert dbg.encoding == "rgb8" and (dbg.height, dbg.width) == (24, 32)
    assert _same_header(dbg.header, img.header)


def test_action_returns_result_and_feedback(node):
    _, c = node
    goal_img = make_image(21, 34, stamp=(55, 66), frame_id="goal_cam", seed=3)
    gh, feedback = c.send_goal("the cup on the goal image", image=goal_img)
    assert gh.accepted
    res = c.wait_future(gh.get_result_async())
    assert res.status == GoalStatus.STATUS_SUCCEEDED
    r = res.result.result
    assert r.status == LensResult.STATUS_OK, r.error
    assert _same_header(r.header, goal_img.header) and (r.mask.height, r.mask.width) == (21, 34)
    assert len(feedback) >= 1 and feedback[0].stage == "queued"
    assert any(f.stage == "generate" for f in feedback)


def test_action_without_image_uses_newest_frame(node):
    _, c = node
    img = make_image(16, 20, stamp=(77, 1), frame_id="newest")
    c.publish_frame(img)
    gh, _ = c.send_goal("anything", reasoning=c.Segment.Goal.REASONING_ON)
    r = c.wait_future(gh.get_result_async()).result.result
    assert r.status == LensResult.STATUS_OK and _same_header(r.header, img.header)


def test_action_cancel_stops_generation(node):
    _, c = node
    assert all(r.successful for r in c.set_params(max_new_tokens=4000))
    try:
        gh, feedback = c.send_goal("talk for a long time")
        assert c.spin_until(lambda: any(f.stage == "generate" for f in feedback), 30)
        cancel = c.wait_future(gh.cancel_goal_async())
        assert len(cancel.goals_canceling) == 1
        res = c.wait_future(gh.get_result_async(), timeout=60)
        assert res.status == GoalStatus.STATUS_CANCELED
        assert res.result.result.status == LensResult.STATUS_CANCELED
        assert "cancel" in res.result.result.error
        generated = sum(f.stage == "generate" for f in feedback)
        assert generated < 4000  # stopped at a token, not at max_new_tokens
    finally:
        c.set_params(max_new_tokens=SHORT)


def test_new_goal_preempts_the_active_one(node):
    _, c = node
    c.set_params(max_new_tokens=4000)
    try:
        first, fb1 = c.send_goal("first goal")
        assert c.spin_until(lambda: any(f.stage == "generate" for f in fb1), 30)
        second, fb2 = c.send_goal("second goal")
        r1 = c.wait_future(first.get_result_async(), timeout=60)
        assert r1.status == GoalStatus.STATUS_ABORTED
        assert r1.result.result.status == LensResult.STATUS_CANCELED
        assert "preempted" in r1.result.result.error
        assert c.spin_until(lambda: any(f.stage == "generate" for f in fb2), 30)
        c.wait_future(second.cancel_goal_async())
        r2 = c.wait_future(second.get_result_async(), timeout=60)
        assert r2.status == GoalStatus.STATUS_CANCELED
    finally:
        c.set_params(max_new_tokens=SHORT)


def test_without_preemption_goals_queue_and_all_succeed(node):
    _, c = node
    c.set_params(action_preempt=False, max_new_tokens=30)
    try:
        goals = [c.send_goal(f"queued goal {i}")[0] for i in range(3)]
        results = [c.wait_future(g.get_result_async(), timeout=60) for g in goals]
        assert [r.status for r in results] == [GoalStatus.STATUS_SUCCEEDED] * 3
        assert [r.result.result.command for r in results] == [f"queued goal {i}" for i in range(3)]
    finally:
        c.set_params(action_preempt=True, max_new_tokens=SHORT)


def test_queue_overflow_answers_the_oldest_with_dropped(node):
    _, c = node
    c.publish_frame(make_image(32, 32, stamp=(9, 9)))
    c.set_params(command_queue_size=2, max_new_tokens=60)
    try:
        names = [f"burst {i}" for i in range(8)]
        for name in names:
            c.command(name)
        assert c.spin_until(lambda: all(c.results_for(n) for n in names), 60)
        total = len(c.results)  # a late duplicate would reach us before the node's next status
        assert c.wait_counter("results", total) and c.fresh_diagnostic()
        statuses = [[r.status for r in c.results_for(n)] for n in names]
        assert all(len(s) == 1 for s in statuses), statuses  # exactly one result each
        flat = [s[0] for s in statuses]
        assert LensResult.STATUS_DROPPED in flat
        served = [i for i, s in enumerate(flat) if s != LensResult.STATUS_DROPPED]
        dropped = [i for i, s in enumerate(flat) if s == LensResult.STATUS_DROPPED]
        assert names[-1] not in [names[i] for i in dropped]  # the newest is never dropped
        assert max(dropped) < max(served)
        assert "command_queue_size=2" in c.results_for(names[dropped[0]])[0].error
    finally:
        c.set_params(command_queue_size=10, max_new_tokens=SHORT)


def test_continuous_mode_reruns_the_command_on_new_frames(node):
    _, c = node
    c.publish_frame(make_image(20, 20, stamp=(300, 0), frame_id="cont"))
    assert all(r.successful for r in c.set_params(mode="continuous"))
    try:
        c.ask("follow me")
        stamps = []
        for i in range(1, 5):
            c.publish_frame(make_image(20, 20, stamp=(300, i), frame_id="cont"))
            c.spin_until(lambda: any(r.header.stamp.nanosec == i  # noqa: B023
                                     for r in c.results_for("follow me")), 10)
        stamps = {r.header.stamp.nanosec for r in c.results_for("follow me")}
        assert len(stamps & {1, 2, 3, 4}) >= 2, stamps  # re-run on later frames
    finally:
        c.set_params(mode="on_command")
    results = int(c.fresh_diagnostic()["results"])  # a re-run in flight has finished by now
    c.publish_frame(make_image(20, 20, stamp=(300, 9), frame_id="cont"))
    c.fresh_diagnostic()
    assert int(c.fresh_diagnostic()["results"]) == results  # on_command: no more re-runs


def test_frame_older_than_max_age_gives_no_image(node):
    _, c = node
    c.set_params(frame_max_age=0.5)
    try:
        c.publish_frame(make_image(20, 20, stamp=(400, 0)))
        c.spin(0.8)  # the frame must age past frame_max_age: the one wait that is the test
        res = c.ask("stale frame")
        assert res.status == LensResult.STATUS_NO_IMAGE
        assert "frame_max_age" in res.error
    finally:
        c.set_params(frame_max_age=2.0)


def test_runtime_parameters_are_validated(node):
    _, c = node
    (bad_range,) = c.set_params(max_new_tokens=0)
    assert not bad_range.successful and "max_new_tokens" in bad_range.reason
    (reload,) = c.set_params(model_path="/somewhere/else")
    assert not reload.successful and "cleanup" in reload.reason
    (mode,) = c.set_params(mode="nonsense")
    assert not mode.successful
    (ok,) = c.set_params(publish_overlay=False)
    assert ok.successful
    c.set_params(publish_overlay=True)


def test_diagnostics_report_model_queue_and_counters(node):
    _, c = node
    c.publish_frame(make_image(20, 20, stamp=(500, 0)))
    c.ask("count me")
    n = len(c.diagnostics)
    assert c.spin_until(lambda: len(c.diagnostics) > n + 1, 10)
    diag = c.latest_diagnostic()
    assert diag["state"] == "active" and diag["model_loaded"] == "True"
    assert diag["model_device"] == "cpu" and diag["queue_length"] == "0"
    assert int(diag["results"]) >= 1 and int(diag["frames_received"]) >= 1
    assert float(diag["last_latency_ms"]) > 0 and "results_OK" in diag
