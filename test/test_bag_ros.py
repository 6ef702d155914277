"""lens-bag play replays a bag into the live lens_node (subprocess, real DDS) and lens-bag record
records the node's results into an mcap bag: each command of the bag gets a result."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image

from conftest import spin_until
from lens_ros.ros.bag_play import BagPlayer, PlayConfig
from helpers.node_client import LensNodeProcess
from helpers.bags import H, W, read_bag, scene as _scene

pytestmark = pytest.mark.ros
COMMANDS = {5: "the red box", 10: "the blue box", 15: "the left one"}  # frame index -> command
N_FRAMES = 20  # 2 s at 10 Hz
LENS_BAG = str(Path(sys.prefix) / "bin" / "lens-bag")  # the console script users run


def write_play_bag(path: Path) -> Path:
    """bgr8 frames at 10 Hz on /camera/image and three commands on /command (sqlite3)."""
    ts = get_typestore(Stores.ROS2_JAZZY)
    BagImage, String = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/String"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        ci = w.add_connection("/camera/image", BagImage.__msgtype__, typestore=ts)
        cc = w.add_connection("/command", String.__msgtype__, typestore=ts)
        for i in range(N_FRAMES):
            t = i * 100_000_000
            bgr = cv2.cvtColor(_scene(i), cv2.COLOR_RGB2BGR)
            msg = BagImage(header=Header(stamp=Time(sec=100 + i, nanosec=0), frame_id="bag_cam"),
                        height=H, width=W, encoding="bgr8", is_bigendian=0, step=W * 3,
                        data=bgr.reshape(-1))
            w.write(ci, t, ts.serialize_cdr(msg, BagImage.__msgtype__))
            if i in COMMANDS:
                w.write(cc, t + 30_000_000, ts.serialize_cdr(String(data=COMMANDS[i]),
                                                             String.__msgtype__))
    return path


def _wait_for_text(path: Path, text: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def test_play_into_live_node_and_record_a_result_per_command(tmp_path, tiny_model_dir, spawn):
    bag = write_play_bag(tmp_path / "play_bag")
    node = LensNodeProcess(tmp_path, {"model_path": str(tiny_model_dir), "max_new_tokens": 8,
                                      "image_reliability": "reliable"})
    rec_dir = tmp_path / "recorded"
    try:
        recorder = spawn(["-m", "lens_ros.ros.bag_cli", "record", "/result", "-o", str(rec_dir),
                          "--max-messages", str(len(COMMANDS)), "--duration", "120"])
        # the node creates /result when it activates; the recorder subscribes once it appears
        assert _wait_for_text(recorder.log, "recording /result", 60), recorder.log.read_text()
        play = subprocess.run(
            [LENS_BAG, "play", str(bag), "--remap", "/camera/image:=/image",
             "--wait-for-subscribers", "30"],
            capture_output=True, text=True, timeout=120)
        assert play.returncode == 0, play.stderr[-3000:]
        assert f"published {N_FRAMES + len(COMMANDS)} messages" in play.stdout
        recorder.wait(timeout=60)  # exits by itself after one result per command
        assert recorder.returncode == 0, recorder.log.read_text()[-3000:]
    finally:
        rc = node.stop()
    assert rc == 0, node.output()[-3000:]

    results = [m for _, m, _ in read_bag(rec_dir)["/result"]]
    assert sorted(r.command for r in results) == sorted(COMMANDS.values())
    for r in results:
        assert r.header.frame_id == "bag_cam" and 100 <= r.header.stamp.sec < 100 + N_FRAMES
        assert r.status == 0, r.error  # STATUS_OK
        assert (r.mask.height, r.mask.width) == (H, W)


def test_play_honours_start_offset_topic_filter_and_remap(tmp_path, rclpy_node):
    """Played in-process at 10x: only messages from 1.0 s of bag time on, only /camera/image,
    published on the remapped topic, each exactly once."""
    bag = write_play_bag(tmp_path / "bag")
    probe, ctx = rclpy_node
    got = []
    probe.create_subscription(Image, "/replayed", got.append, QoSProfile(depth=100))
    player_node = Node("player_under_test", context=ctx)
    cfg = PlayConfig(rate=10.0, start_offset=1.0, topics=["/camera/image"],
                     remap={"/camera/image": "/replayed"}, qos_depth=100,
                     wait_for_subscribers=10.0)
    player = BagPlayer(player_node, bag, cfg)
    published = []
    thread = threading.Thread(target=lambda: published.append(player.play()))
    thread.start()
    try:
        assert spin_until(probe, lambda: len(got) >= N_FRAMES - 10 and published, timeout=30)
    finally:
        thread.join(timeout=10)
        player_node.destroy_node()
    assert published == [N_FRAMES - 10]  # frames 10..19 (t >= 1.0 s), no command
    assert [m.header.stamp.sec for m in got] == list(range(110, 100 + N_FRAMES))
