"""A seeded corpus of >= 200 malformed inputs (Image, CompressedImage bytes on the Image topic,
commands, Segment goals) against a live lens_node in its own process: every input gets exactly
one terminal status and the node is alive and active at the end."""
from __future__ import annotations

import pytest

from helpers.fuzz_corpus import corpus
from helpers.node_client import running_node

pytestmark = [pytest.mark.ros, pytest.mark.slow]

N_INPUTS = 220


def _image_msg(entry: dict):
    from sensor_msgs.msg import Image

    if entry["kind"] == "compressed":  # compressed bytes sent where raw pixels are expected
        n = len(entry["data"])
        entry = {**entry, "height": 1, "width": n, "step": n, "encoding": entry["format"]}
    msg = Image(height=entry["height"], width=entry["width"], encoding=entry["encoding"],
                step=entry["step"], data=entry["data"])
    msg.header.stamp.sec, msg.header.stamp.nanosec = entry["stamp"]
    msg.header.frame_id = entry["frame_id"]
    return msg


def test_fuzz_corpus_gets_one_terminal_status_per_input(tiny_model_dir, tmp_path):
    params = {"model_path": str(tiny_model_dir), "max_new_tokens": 2, "reasoning": False,
              "frame_max_age": 0.0}
    entries = corpus(N_INPUTS, seed=19)
    kinds = {k: sum(e["kind"] == k for e in entries) for k in ("image", "compressed", "command",
                                                               "goal")}
    with running_node(tmp_path, params, "fuzz_client", ns="fuzz") as (proc, c):
        unanswered, statuses = [], {}
        for i, e in enumerate(entries):
            before = len(c.results)
            if e["kind"] in ("image", "compressed"):  # a frame, then a command answered on it
                c.publish_image(_image_msg(e))
                c.command(f"probe {i}")
            elif e["kind"] == "command":
                c.command(e["text"])
            else:
                handle, _ = c.send_goal(e["text"], image=_image_msg(e["image"]))
                assert handle.accepted, f"goal {i} rejected"
                goal_result = c.wait_future(handle.get_result_async(), 60)
                statuses.setdefault("goal", []).append(goal_result.result.result.status)
            if not c.spin_until(lambda: len(c.results) > before, 60):
                unanswered.append((i, e["kind"]))
                continue
            statuses.setdefault(e["kind"], []).append(c.results[-1][1].status)
        # no late or duplicated answers: exactly one result per input, counted by the node too
        assert c.spin_until(lambda: int(c.latest_diagnostic().get("results", -1))
                            >= len(entries), 20)
        c.spin(0.5)
        diag = c.latest_diagnostic()
        print(f"\nfuzz corpus: {len(entries)} inputs {kinds}; results {len(c.results)}; "
              f"unanswered {len(unanswered)}; node results counter {diag['results']}; "
              f"statuses {sorted((k, v) for k, v in diag.items() if k.startswith('results_'))}")
        assert not unanswered, unanswered[:10]
        assert len(c.results) == len(entries) == int(diag["results"])
        assert proc.alive() and c.state() == "active"
        assert "Traceback" not in proc.output()
