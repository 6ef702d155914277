"""lens_node's track mode, 3D target and command batching, with the tiny model.

The first tests drive the node's inference worker directly (rclpy-free, no DDS): the track-mode
timeline (LENS on the command, TRACKED frames with the LENS frame's stamp, re-acquisition after
``reacquire_period``), several pending commands answered by one ``segment_batch``, and the depth
matching of the 3D hook. The last test runs the real node process over DDS with ``mode: track``
and ``enable_3d``. Random weights: plumbing and statuses, not mask quality.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from lens_ros.core import Segmentation, Status
from lens_ros.geometry import metres_to_16uc1
from lens_ros.model import LensSegmenter
from lens_ros.model.tracking.memory import Tracker
from lens_ros.model.tracking.weights import head_sam_config, save_tracking_head
from lens_ros.serving.depth_sync import DepthSync
from lens_ros.conversions.image import image_to_rgb, make_header, numpy_to_image, rclpy_types
from lens_ros.ros.parameters import NodeParams, defaults
from lens_ros.serving.requests import Frame, Outcome, Request
from lens_ros.serving.track_mode import tracking_weights_problem
from lens_ros.serving.worker import InferenceWorker
from lens_ros.synthetic import SceneConfig, make_sequence

TYPES = rclpy_types()


@pytest.fixture(scope="module")
def sequence():
    return make_sequence(np.random.default_rng(5), 8, SceneConfig(width=64, height=48))


@pytest.fixture(scope="module")
def tracker_dir(tiny_model_dir, tmp_path_factory):
    """Untrained tracking weights for the tiny model (they run; they cannot follow a target)."""
    seg = LensSegmenter.from_pretrained(tiny_model_dir)
    out = tmp_path_factory.mktemp("tracker")
    save_tracking_head(Tracker.untrained(seg).head, out, head_sam_config(
        seg.model.lens_config.sam))
    return out


def _image(rgb, t: float, encoding: str = "rgb8"):
    return numpy_to_image(rgb, encoding, make_header(TYPES, int(round(t * 1e9)), "cam"), TYPES)


def _camera_info(k, t: float = 0.0):
    return CameraInfo(header=make_header(TYPES, int(round(t * 1e9)), "cam"), width=k.width,
                      height=k.height, k=[float(v) for v in k.matrix.reshape(-1)])


def _params(model_dir, **changes) -> NodeParams:
    return NodeParams(**{**defaults(), "model_path": str(model_dir), "max_new_tokens": 4,
                         **changes})


class _Run:
    """A started worker collecting its outcomes."""

    def __init__(self, seg, params, postprocess=None, start=True):
        self.outs: list[Outcome] = []
        self.worker = InferenceWorker(seg, params, image_to_rgb, self.outs.append,
                                      postprocess=postprocess)
        if start:
            self.worker.start()

    def wait(self, n: int, timeout: float = 30.0) -> list[Outcome]:
        end = time.monotonic() + timeout
        while len(self.outs) < n and time.monotonic() < end:
            time.sleep(0.01)
        assert len(self.outs) >= n, f"{len(self.outs)} outcomes, expected {n}"
        return self.outs

    def stop(self):
        self.worker.stop()


def _secs(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def test_track_mode_tracks_between_lens_calls(tiny_model_dir, tracker_dir, sequence):
    seg = LensSegmenter.from_pretrained(tiny_model_dir)
    run = _Run(seg, _params(tiny_model_dir, mode="track", reacquire_period=0.45,
                            track_min_object_score=-1000.0, tracker_path=str(tracker_dir)))
    try:
        frames = [_image(f.rgb, 10.0 + 0.1 * i) for i, f in enumerate(sequence.frames)]
        run.worker.put_frame(frames[0])
        run.worker.submit(Request("the cube"))
        run.wait(1)
        for i in range(1, len(frames)):
            run.worker.put_frame(frames[i])
            run.wait(i + 1)
    finally:
        run.stop()
    outs = run.outs
    statuses = [o.result.status for o in outs]
    lens = [Status.OK, Status.TRACKED, Status.TRACKED, Status.TRACKED, Status.TRACKED,
            Status.OK, Status.TRACKED, Status.TRACKED]
    assert statuses == lens  # LENS at 10.0 (the command) and 10.5 (reacquire_period 0.45 s)
    assert [o.frame.msg is f for o, f in zip(outs, frames)] == [True] * len(frames)
    assert outs[0].request.source == "topic" and outs[5].request.source == "repeat"
    sources = [None if o.source_stamp is None else round(_secs(o.source_stamp), 3) for o in outs]
    assert sources == [None, 10.0, 10.0, 10.0, 10.0, None, 10.5, 10.5]
    assert all(o.result.command == "the cube" and o.rgb is not None for o in outs)
    assert all(o.result.mask.shape == (48, 64) for o in outs)


def test_track_mode_needs_tracking_weights(tiny_model_dir, tracker_dir, tmp_path, sequence):
    assert tracking_weights_problem(_params(tiny_model_dir, tracker_path=str(tracker_dir))) \
        is None
    why = tracking_weights_problem(_params(tiny_model_dir))  # the tiny checkpoint has none
    assert why and "tracker.safetensors" in why and "tracker_path" in why
    seg = LensSegmenter.from_pretrained(tiny_model_dir)
    run = _Run(seg, _params(tiny_model_dir, mode="track"))
    try:
        run.worker.put_frame(_image(sequence.frames[0].rgb, 1.0))
        run.worker.submit(Request("the cube"))
        out = run.wait(1)[0]
    finally:
        run.stop()
    assert out.result.status == Status.NOT_READY and "no tracking weights" in out.result.error


def test_pending_commands_on_one_frame_share_one_batch(tiny_model_dir, sequence):
    seg = LensSegmenter.from_pretrained(tiny_model_dir, max_new_tokens=4)
    calls = []
    batch, single = seg.segment_batch, seg.segment
    seg.segment_batch = lambda cmds, **kw: calls.append(("batch", list(cmds))) or batch(cmds, **kw)
    seg.segment = lambda cmd, **kw: calls.append(("one", cmd)) or single(cmd, **kw)
    run = _Run(seg, _params(tiny_model_dir), start=False)
    run.worker.put_frame(_image(sequence.frames[0].rgb, 1.0))
    commands = ["the cube", "the ball", "the red mug"]
    for c in commands:
        run.worker.submit(Request(c))
    run.worker.submit(Request("the bowl", stream=lambda text: None))  # a goal: kept apart
    run.worker.start()
    try:
        outs = run.wait(4)
    finally:
        run.stop()
    assert calls == [("batch", commands), ("one", "the bowl")]
    assert [o.result.command for o in outs] == commands + ["the bowl"]
    assert all(o.result.status == Status.OK and o.rgb is not None for o in outs)
    seg.set_image(sequence.frames[0].rgb)
    for o, c in zip(outs, commands):  # same answers as separate calls (greedy)
        assert o.result.answer == single(c).answer


def test_depth_sync_matches_depth_by_stamp_and_reports_no_depth(sequence):
    scene = sequence.frames[0]
    mask = sequence.masks[0]
    sync = DepthSync()

    def attach(t):
        out = Outcome(Request("x"), Segmentation(command="x", mask=mask), Frame(
            _image(scene.rgb, t), 0.0))
        sync.attach(out)
        return out.result

    assert attach(5.0).status == Status.NO_DEPTH  # nothing received yet
    sync.put_camera_info(_camera_info(scene.intrinsics))
    sync.put_depth(_image(scene.depth, 4.0, "32FC1"))
    sync.put_depth(_image(np.zeros_like(scene.depth), 5.0, "32FC1"))  # all invalid
    sync.put_depth(_image(metres_to_16uc1(scene.depth), 6.0, "16UC1"))
    good = attach(4.05)
    assert good.status == Status.OK and good.point is not None
    centre = sequence.frames[0].objects[sequence.target].centre
    assert np.linalg.norm(good.point - centre) / np.linalg.norm(centre) < 0.05
    bad = attach(5.02)
    assert bad.status == Status.NO_DEPTH and "no valid depth" in bad.error
    assert np.array_equal(bad.mask, mask)
    mm = attach(5.9)  # 16UC1 millimetres
    assert mm.status == Status.OK and np.allclose(mm.point, good.point, atol=0.01)
    stale = attach(9.0)
    assert stale.status == Status.NO_DEPTH and "from the frame" in stale.error


# ---- the real node over DDS --------------------------------------------------------------------
@pytest.mark.ros
def test_node_tracks_and_publishes_target_point(tiny_model_dir, tracker_dir, sequence, tmp_path):
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import Image

    from lens_ros.msg import LensResult
    from helpers.node_client import LensNodeProcess, NodeClient

    proc = LensNodeProcess(tmp_path, {
        "model_path": str(tiny_model_dir), "max_new_tokens": 4, "mode": "track",
        "tracker_path": str(tracker_dir), "reacquire_period": 100.0,
        "track_min_object_score": -1000.0, "enable_3d": True, "image_reliability": "reliable"})
    c = NodeClient("track_client")
    try:
        c.wait_active()
        depth_pub = c.node.create_publisher(Image, "depth", c._reliable)
        info_pub = c.node.create_publisher(CameraInfo, "camera_info", c._reliable)
        points = []
        c.node.create_subscription(PointStamped, "target_point", points.append, c._reliable)
        assert c.spin_until(lambda: depth_pub.get_subscription_count() > 0
                            and info_pub.get_subscription_count() > 0, 20)
        scene = sequence.frames[0]
        info_pub.publish(_camera_info(scene.intrinsics))

        def frame(i, depth):
            t = 20.0 + 0.1 * i
            depth_pub.publish(_image(depth, t, "32FC1"))
            c.spin(0.05)
            img = _image(sequence.frames[i].rgb, t)
            c.publish_image(img)
            return img

        first = frame(0, scene.depth)
        assert c.wait_counter("frames_received", 1)
        res = c.ask("the cube")
        assert res.status == LensResult.STATUS_OK and res.has_point, res.error
        for i in range(1, 4):
            img = frame(i, sequence.frames[i].depth)
            assert c.spin_until(lambda: any(_secs(m.header.stamp) == _secs(img.header.stamp)
                                            for _, m in c.results), 20)
        tracked = [m for _, m in c.results if _secs(m.header.stamp) > _secs(first.header.stamp)]
        assert [m.status for m in tracked] == [LensResult.STATUS_TRACKED] * 3
        assert all(_secs(m.source_stamp) == _secs(first.header.stamp) for m in tracked)
        assert all(m.has_point and m.target_point.z > 0 for m in tracked)
        assert c.spin_until(lambda: len(points) >= 4, 10)
        assert {round(_secs(p.header.stamp), 3) for p in points} >= {20.0, 20.1, 20.2, 20.3}
        # invalid depth: a NO_DEPTH result (mask still valid), and the node lives on
        img = frame(4, np.zeros_like(scene.depth))
        assert c.spin_until(lambda: any(_secs(m.header.stamp) == _secs(img.header.stamp)
                                        for _, m in c.results), 20)
        last = c.results[-1][1]
        assert last.status == LensResult.STATUS_NO_DEPTH and not last.has_point
        assert "no valid depth" in last.error and last.mask.width == 64
        assert proc.alive()
    finally:
        c.close()
        rc = proc.stop()
        assert rc == 0, f"lens_node exited with {rc}:\n{proc.output()[-3000:]}"
