"""lens-bag run on bags generated here with rosbags alone (mcap and sqlite3; rgb8/bgr8/mono8/
bgra8/yuv422 frames, a CompressedImage topic, a command topic and one corrupted message each):
the output bag has a LensResult for every frame, readable by rosbags and by rclpy, the report has
one row per frame, and an interrupted run resumes without recomputing finished frames."""
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from lens_ros.bag import cli as bag_cli
from lens_ros.bag.runner import BagRunner, RunConfig
from lens_ros.core import Status
from helpers.bags import H, W, read_bag, scene

N_FRAMES = 32
CORRUPT_FRAME = 7  # its CDR is cut short: it cannot even be deserialized
N_COMPRESSED = 10
CORRUPT_COMPRESSED = 4  # valid CDR, but the JPEG bytes are garbage
ENCODINGS = ("rgb8", "bgr8", "mono8", "bgra8", "yuv422")
COMMANDS = ((0, "the red box"), (16, "the blue box"))  # (first frame, command)


def _encode(rgb: np.ndarray, enc: str) -> tuple[np.ndarray, int]:
    """(array in the encoding's layout, bytes per pixel)."""
    if enc == "rgb8":
        return rgb, 3
    if enc == "bgr8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 3
    if enc == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1
    if enc == "bgra8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA), 4
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)  # pack UYVY by hand: U0 Y0 V0 Y1
    out = np.empty((H, W * 2), np.uint8)
    out[:, 1::2] = yuv[:, :, 0]
    out[:, 0::4] = yuv[:, 0::2, 1]
    out[:, 2::4] = yuv[:, 0::2, 2]
    return out, 2


def write_test_bag(path: Path, storage: str) -> Path:
    """A rosbag2 written with plain rosbags and Jazzy's typestore (independent of lens_ros.bag)."""
    ts = get_typestore(Stores.ROS2_JAZZY)
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    String, Header = ts.types["std_msgs/msg/String"], ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]

    def header(i):
        ns = 1_700_000_000_000_000_000 + i * 100_000_000
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="camera")

    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_img = w.add_connection("/camera/image", Image.__msgtype__, typestore=ts)
        c_cmp = w.add_connection("/camera/image/compressed", Compressed.__msgtype__, typestore=ts)
        c_cmd = w.add_connection("/command", String.__msgtype__, typestore=ts)
        commands = dict(COMMANDS)
        for i in range(N_FRAMES):
            t = 1_000_000 + i * 100_000_000
            if i in commands:
                w.write(c_cmd, t - 500_000, ts.serialize_cdr(String(data=commands[i]),
                                                             String.__msgtype__))
            enc = ENCODINGS[i % len(ENCODINGS)]
            arr, bpp = _encode(scene(i), enc)
            msg = Image(header=header(i), height=H, width=W, encoding=enc, is_bigendian=0,
                        step=W * bpp, data=np.ascontiguousarray(arr).reshape(-1))
            raw = bytes(ts.serialize_cdr(msg, Image.__msgtype__))
            w.write(c_img, t, raw[:60] if i == CORRUPT_FRAME else raw)
            if i < N_COMPRESSED:
                ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(scene(i), cv2.COLOR_RGB2BGR))
                data = np.frombuffer(b"not a jpeg at all" * 4, np.uint8) \
                    if i == CORRUPT_COMPRESSED else jpg.reshape(-1)
                msg = Compressed(header=header(i), format="jpeg", data=data)
                w.write(c_cmp, t + 1000, ts.serialize_cdr(msg, Compressed.__msgtype__))
    return path


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir):
    from lens_ros.model import LensSegmenter

    return LensSegmenter.from_pretrained(tiny_model_dir, max_new_tokens=8)  # ~8 tokens: fast


def _stamp(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def test_run_mcap_with_command_topic_gives_a_result_per_frame(tmp_path, tiny_model_dir):
    bag = write_test_bag(tmp_path / "in_mcap", "mcap")
    out = tmp_path / "out"
    argv = ["run", str(bag), "-o", str(out), "--model", str(tiny_model_dir), "--command-topic",
            "/command", "--image-topic", "/camera/image", "--max-new-tokens", "8", "--no-progress"]
    assert bag_cli.main(argv) == 0

    got = read_bag(out / "bag")
    assert any(out.joinpath("bag").glob("*.mcap"))
    results = [m for _, m, _ in got["/lens/result"]]
    assert len(results) == N_FRAMES
    assert [r.status for r in results].count(Status.BAD_IMAGE) == 1
    assert results[CORRUPT_FRAME].status == Status.BAD_IMAGE and results[CORRUPT_FRAME].error
    ins = [m for _, m, _ in got["/camera/image"]]  # the corrupted one is copied as it was
    assert len(ins) == N_FRAMES and ins[CORRUPT_FRAME] is None and len(got["/command"]) == 2
    assert len(got["/camera/image/compressed"]) == N_COMPRESSED
    for i, r in enumerate(results):
        assert r.command == ("the red box" if i < 16 else "the blue box")
        if i != CORRUPT_FRAME:
            assert r.status != Status.BAD_IMAGE
            assert (r.mask.height, r.mask.width, r.mask.encoding) == (H, W, "mono8")
            assert _stamp(r.header) == _stamp(ins[i].header) and r.header.frame_id == "camera"
    n_ok = sum(Status(r.status).is_success for r in results)
    assert len(got["/lens/mask"]) == n_ok
    assert len(got["/lens/debug_image"]) == N_FRAMES - 1  # every decodable frame
    assert got["/lens/debug_image"][0][1].encoding == "rgb8"

    rows = list(csv.DictReader(open(out / "frames.csv")))
    assert [int(r["frame"]) for r in rows] == list(range(N_FRAMES))
    assert rows[CORRUPT_FRAME]["status"] == "BAD_IMAGE"
    assert sum(1 for _ in open(out / "frames.jsonl")) == N_FRAMES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == N_FRAMES and summary["statuses"]["BAD_IMAGE"] == 1
    assert summary["computed"] == N_FRAMES - 1 and (out / "overlays.png").is_file()


def test_written_lens_result_is_readable_by_rclpy(tmp_path, segmenter):
    from rclpy.serialization import deserialize_message, serialize_message

    from lens_ros.msg import LensResult

    bag = write_test_bag(tmp_path / "in", "mcap")
    BagRunner(segmenter, RunConfig(command="the red box", image_topic="/camera/image",
                                                max_frames=3), progress=False).run(
        bag, tmp_path / "out")
    _, rosbags_msg, raw = read_bag(tmp_path / "out" / "bag")["/lens/result"][0]
    msg = deserialize_message(raw, LensResult)
    assert msg.command == "the red box" and msg.status == rosbags_msg.status
    assert (msg.mask.width, msg.mask.height) == (W, H)
    assert bytes(msg.mask.data) == bytes(rosbags_msg.mask.data)
    # and back: rosbags reads rclpy's CDR (compared field by field: rclpy leaves its alignment
    # padding bytes uninitialised, so the two byte strings may differ in padding only)
    from lens_ros.bag.io import make_typestore

    back = make_typestore().deserialize_cdr(bytes(serialize_message(msg)),
                                            "lens_ros/msg/LensResult")
    fields = ("command", "status", "error", "has_box", "score", "answer", "total_ms")
    assert [getattr(back, f) for f in fields] == [getattr(rosbags_msg, f) for f in fields]
    assert np.array_equal(back.box, rosbags_msg.box)
    assert _stamp(back.header) == _stamp(rosbags_msg.header) == 1_700_000_000 * 10**9
    assert bytes(back.mask.data) == bytes(rosbags_msg.mask.data)


def test_run_sqlite3_compressed_topic_with_fixed_command(tmp_path, tiny_model_dir):
    bag = write_test_bag(tmp_path / "in_db3", "sqlite3")
    out = tmp_path / "out"
    argv = ["run", str(bag), "-o", str(out), "--model", str(tiny_model_dir), "--command",
            "the red box", "--image-topic", "/camera/image/compressed", "--max-new-tokens", "8",
            "--no-progress"]
    assert bag_cli.main(argv) == 0
    assert any(out.joinpath("bag").glob("*.db3"))
    results = [m for _, m, _ in read_bag(out / "bag")["/lens/result"]]
    assert len(results) == N_COMPRESSED
    bad = [i for i, r in enumerate(results) if r.status == Status.BAD_IMAGE]
    assert bad == [CORRUPT_COMPRESSED]
    assert all(r.command == "the red box" for r in results)
    rows = list(csv.DictReader(open(out / "frames.csv")))
    assert len(rows) == N_COMPRESSED
    assert "could not be decoded" in rows[CORRUPT_COMPRESSED]["error"]


class Interrupting:
    """The real segmenter that raises KeyboardInterrupt (Ctrl-C) on its ``stop_at``-th call."""

    def __init__(self, inner, stop_at=None):
        self.inner, self.stop_at, self.calls = inner, stop_at, 0

    def set_image(self, rgb):
        self.inner.set_image(rgb)

    def check_command(self, command):
        return self.inner.check_command(command)

    def segment(self, command, reasoning=None):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.inner.segment(command, reasoning=reasoning)


def test_interrupted_run_resumes_without_recomputing(tmp_path, segmenter):
    bag = write_test_bag(tmp_path / "in", "mcap")
    out = tmp_path / "out"
    cfg = RunConfig(command_topic="/command", image_topic="/camera/image")
    with pytest.raises(KeyboardInterrupt):
        BagRunner(Interrupting(segmenter, stop_at=13), cfg, progress=False).run(bag, out)
    assert not (out / "bag").exists() and (out / "partial" / "bag").exists()
    first = [json.loads(x) for x in open(out / "frames.jsonl")]
    assert [r["frame"] for r in first] == list(range(13))  # 12 computed + the corrupted frame

    again = Interrupting(segmenter)
    summary = BagRunner(again, cfg, progress=False).run(bag, out)
    assert again.calls == N_FRAMES - 13  # only the frames without a record
    assert summary["reused"] == 13 and summary["computed"] == N_FRAMES - 13
    recs = [json.loads(x) for x in open(out / "frames.jsonl")]
    assert sorted(r["frame"] for r in recs) == list(range(N_FRAMES))
    assert [r["time"] for r in recs[:13]] == [r["time"] for r in first]
    results = read_bag(out / "bag")["/lens/result"]
    assert len(results) == N_FRAMES and not (out / "partial").exists()
    assert not list((out / "bag").glob("*partial*"))  # the finished bag's files are bag.*
    assert results[CORRUPT_FRAME][1].status == Status.BAD_IMAGE

    with pytest.raises(OSError, match="other settings"):  # same output, other settings: refused
        BagRunner(again, RunConfig(command="x"), progress=False).run(bag, out)


def test_every_n_frames_records_skipped_frames(tmp_path, segmenter):
    bag = write_test_bag(tmp_path / "in", "mcap")
    cfg = RunConfig(command="the red box", image_topic="/camera/image", every_n_frames=3,
                    max_frames=7, debug_topic="")
    summary = BagRunner(segmenter, cfg, progress=False).run(bag, tmp_path / "out")
    recs = [json.loads(x) for x in open(tmp_path / "out" / "frames.jsonl")]
    skipped = [r["status"] == "SKIPPED" for r in recs]
    assert skipped == [False, True, True, False, True, True, False]
    assert summary["frames"] == 7 and summary["skipped"] == 4
    got = read_bag(tmp_path / "out" / "bag")
    assert len(got["/lens/result"]) == 3 and "/lens/debug_image" not in got
