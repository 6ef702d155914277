"""lens_node's lifecycle, driven through its lifecycle services from another process.

The node starts with ``autostart: false`` and a checkpoint path that does not exist, so the
first configure must fail and leave it configurable; then it is fixed and cycled repeatedly.
"""
from __future__ import annotations

import pytest
from action_msgs.msg import GoalStatus

from lens_ros.msg import LensResult
from helpers.node_client import long_talker_checkpoint, make_image, running_node

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def node(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("lens_node_lifecycle")
    ckpt = long_talker_checkpoint(tiny_model_dir, work)
    params = {"model_path": str(work / "no_such_checkpoint"), "autostart": False,
              "max_new_tokens": 8, "image_reliability": "reliable"}
    with running_node(work, params, "lifecycle_client", wait_active=False,
                      ns="lifecycle_test") as (proc, client):
        yield proc, client, ckpt


def test_node_waits_unconfigured_without_autostart(node):
    proc, c, _ = node
    assert c.state() == "unconfigured"
    assert c.image_pub.get_subscription_count() == 0
    assert proc.alive()


def test_configure_with_missing_checkpoint_fails_and_node_stays_configurable(node):
    proc, c, ckpt = node
    assert c.change("configure") is False
    assert c.state() == "unconfigured" and proc.alive()
    assert c.spin_until(lambda: "configure failed" in c.latest_diagnostic().get("message", ""),
                        10)
    assert "no_such_checkpoint" in c.latest_diagnostic()["message"]
    assert "no_such_checkpoint" in proc.output()  # the log names the bad path
    (ok,) = c.set_params(model_path=str(ckpt))  # allowed: no model is loaded
    assert ok.successful, ok.reason
    assert c.change("configure") is True
    assert c.state() == "inactive"


def test_inactive_node_has_no_topics_and_rejects_goals(node):
    _, c, _ = node
    assert c.state() == "inactive"
    c.spin(0.5)
    assert c.image_pub.get_subscription_count() == 0
    assert c.action.wait_for_server(timeout_sec=10)  # the server lives from configure on ...
    gh, _ = c.send_goal("while inactive")
    assert not gh.accepted  # ... and accepts goals only while active
    (reload,) = c.set_params(model_path="/elsewhere")  # model loaded: refused
    assert not reload.successful


@pytest.mark.parametrize("cycle", range(3))
def test_activate_deactivate_cleanup_cycles(node, cycle):
    proc, c, _ = node
    if c.state() == "unconfigured":
        assert c.change("configure") is True
    assert c.change("activate") is True and c.state() == "active"
    c.wait_matched()
    img = make_image(12, 18, stamp=(600 + cycle, 0), frame_id="lc")
    c.publish_frame(img)
    res = c.ask(f"cycle {cycle}")
    assert res.status == LensResult.STATUS_OK and res.header.stamp.sec == 600 + cycle
    assert c.change("deactivate") is True and c.state() == "inactive"
    assert c.spin_until(lambda: c.image_pub.get_subscription_count() == 0, 10)
    c.command(f"cycle {cycle} while inactive")
    c.fresh_diagnostic()  # an answer would reach us before the node's next status
    assert c.results_for(f"cycle {cycle} while inactive") == []
    assert c.change("cleanup") is True and c.state() == "unconfigured"
    assert c.spin_until(lambda: c.latest_diagnostic().get("model_loaded") == "False", 10)
    assert proc.alive()


def test_deactivate_answers_a_running_goal(node):
    _, c, _ = node
    assert c.change("configure") and c.change("activate")
    c.wait_matched()
    c.set_params(max_new_tokens=4000)
    c.publish_frame(make_image(12, 18, stamp=(700, 0)))
    gh, feedback = c.send_goal("long goal")
    assert c.spin_until(lambda: any(f.stage == "generate" for f in feedback), 30)
    result = gh.get_result_async()
    assert c.change("deactivate") is True
    res = c.wait_future(result, timeout=30)
    assert res.status == GoalStatus.STATUS_ABORTED
    assert res.result.result.status == LensResult.STATUS_NOT_READY
    c.set_params(max_new_tokens=8)
    assert c.change("cleanup") is True


def test_shutdown_finalizes_and_process_exits_cleanly(node):
    proc, c, _ = node
    assert c.change("configure") and c.change("activate")
    assert c.change("shutdown") is True
    assert c.state() == "finalized"
    assert proc.alive()  # finalized nodes keep answering until the process is stopped
