"""A burst of 300 commands published with ``COMMAND_QOS`` while 640x480 frames stream at 30 Hz.

The node promises one ``result`` per command that reaches it: with the documented publisher
profile every command of the burst reaches it, so each gets exactly one result (``OK``, or
``DROPPED`` for the overflow beyond ``command_queue_size``), and ``commands_received`` in
/diagnostics counts all of them.
"""
from __future__ import annotations

import time

import pytest

from lens_ros.msg import LensResult
from helpers.node_client import make_image, running_node

pytestmark = [pytest.mark.ros, pytest.mark.slow]

BURST, FPS = 300, 30.0


def test_command_burst_gets_one_result_each(tiny_model_dir, tmp_path):
    from std_msgs.msg import String

    from lens_ros.ros.qos import COMMAND_QOS

    params = {"model_path": str(tiny_model_dir), "max_new_tokens": 4, "reasoning": False}
    with running_node(tmp_path, params, "burst_client", ns="burst") as (proc, c):
        pub = c.node.create_publisher(String, "burst/command", COMMAND_QOS)
        assert c.spin_until(lambda: pub.get_subscription_count() > 0, 20)
        frames = [make_image(480, 640, seed=i, frame_id="burst") for i in range(3)]
        sent = 0

        def stream(until: float) -> None:
            nonlocal sent
            while time.monotonic() < until:
                c.publish_image(frames[sent % 3])
                sent += 1
                c.executor.spin_once(timeout_sec=1.0 / FPS)

        stream(time.monotonic() + 0.5)
        asked = [f"burst command {i}" for i in range(BURST)]
        for i, text in enumerate(asked):
            pub.publish(String(data=text))
            if i % 10 == 9:
                c.publish_image(frames[sent % 3])
                sent += 1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(c.results_for(a) for a in asked):
            stream(time.monotonic() + 0.3)
        # the node's own counter: every command of the burst reached the subscription
        assert c.spin_until(lambda: int(c.latest_diagnostic().get("commands_received", -1))
                            >= BURST, 10), c.latest_diagnostic()
        counts = [len(c.results_for(a)) for a in asked]
        statuses = [r.status for a in asked for r in c.results_for(a)]
        diag = c.latest_diagnostic()
        print(f"\nburst {BURST}: results {sum(counts)}, missing {counts.count(0)}, "
              f"duplicated {sum(n > 1 for n in counts)}; OK {statuses.count(LensResult.STATUS_OK)}"
              f", DROPPED {statuses.count(LensResult.STATUS_DROPPED)}; commands_received "
              f"{diag['commands_received']}; frames sent {sent}")
        assert counts == [1] * BURST
        assert set(statuses) <= {LensResult.STATUS_OK, LensResult.STATUS_DROPPED}
        assert int(diag["commands_received"]) == BURST
        assert proc.alive()
