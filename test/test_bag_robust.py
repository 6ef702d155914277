"""``lens-bag run`` never aborts on one frame: bad pixels of every kind, thin frames, damaged
CDR, empty and control-character commands each get a record with the frame's own header; a
seeded fuzz corpus gives one record per frame; unusable inputs get a one-line error, exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from lens_ros.bag import cli as bag_cli
from helpers.bags import read_bag
from helpers.fuzz_corpus import corpus

TS = get_typestore(Stores.ROS2_JAZZY)
Image, Compressed = TS.types["sensor_msgs/msg/Image"], TS.types["sensor_msgs/msg/CompressedImage"]
String, Header = TS.types["std_msgs/msg/String"], TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]


def _header(sec: int, frame_id: str):
    return Header(stamp=Time(sec=sec, nanosec=17), frame_id=frame_id)


def _image(h, w, enc="rgb8", step=None, data=None, sec=0, frame_id="cam"):
    step = w * 3 if step is None else step
    data = np.full(step * h, 100, np.uint8) if data is None else np.frombuffer(data, np.uint8)
    return Image(header=_header(sec, frame_id), height=h, width=w, encoding=enc, is_bigendian=0,
                 step=step, data=data)


def _write(path: Path, items: list[tuple[str, object]]) -> Path:
    """items: (topic, message or raw bytes) in time order (100 ms apart)."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {"/image": w.add_connection("/image", Image.__msgtype__, typestore=TS),
                 "/compressed": w.add_connection("/compressed", Compressed.__msgtype__,
                                                 typestore=TS),
                 "/command": w.add_connection("/command", String.__msgtype__, typestore=TS)}
        for k, (topic, msg) in enumerate(items):
            raw = msg if isinstance(msg, bytes) else TS.serialize_cdr(msg, msg.__msgtype__)
            w.write(conns[topic], 1_000_000 + k * 100_000_000, raw)
    return path


def _run(bag, out, model, *extra) -> int:
    return bag_cli.main(["run", str(bag), "-o", str(out), "--model", str(model),
                         "--max-new-tokens", "2", "--no-reasoning", "--no-progress", *extra])


def test_bad_frames_and_commands_are_records_with_their_own_header(tmp_path, tiny_model_dir):
    good = _image(24, 32, sec=10, frame_id="f0")
    cut = bytes(TS.serialize_cdr(_image(24, 32, sec=17, frame_id="f7"), Image.__msgtype__))[:40]
    items = [("/command", String(data="the box")), ("/image", good),
             ("/image", _image(24, 32, data=b"\x01" * 50, sec=11, frame_id="f1")),   # truncated
             ("/image", _image(0, 0, data=b"", sec=12, frame_id="f2")),              # 0x0
             ("/image", _image(4, 4, enc="bayer_xyz8", sec=13, frame_id="f3")),      # encoding
             ("/image", _image(4, 4, step=5, sec=14, frame_id="f4")),                # bad step
             ("/image", _image(5, 1000, sec=15, frame_id="f5")),                     # thin
             ("/image", _image(1, 300, sec=16, frame_id="f6")),                      # aspect
             ("/image", cut),                                                        # damaged
             ("/command", String(data="")), ("/image", _image(8, 8, sec=18, frame_id="f8")),
             ("/command", String(data="the \x07 box")),
             ("/image", _image(8, 8, sec=19, frame_id="f9"))]
    bag, out = _write(tmp_path / "in", items), tmp_path / "out"
    assert _run(bag, out, tiny_model_dir, "--command-topic", "/command",
                "--image-topic", "/image") == 0
    recs = [json.loads(x) for x in open(out / "frames.jsonl")]
    status = [r["status"] for r in recs]
    assert status[0] in ("OK", "NO_TARGET")
    assert status[1:5] == ["BAD_IMAGE"] * 4 and status[5] in ("OK", "NO_TARGET")
    assert status[6] == "BAD_IMAGE" and "aspect ratio" in recs[6]["error"]
    assert status[7] == "BAD_IMAGE" and "deserialized" in recs[7]["error"]
    assert status[8] == "BAD_COMMAND" and "empty" in recs[8]["error"]
    assert status[9] == "BAD_COMMAND" and "control character" in recs[9]["error"]
    assert [r["stamp_ns"] for r in recs] == [(10 + i) * 10**9 + 17 for i in range(10)]
    results = [m for _, m, _ in read_bag(out / "bag")["/lens/result"]]
    assert [r.header.frame_id for r in results] == [f"f{i}" for i in range(10)]
    assert sorted(p.name for p in (out / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]
    assert not (out / "partial").exists()


def test_fuzz_corpus_through_lens_bag_gives_one_record_per_frame(tmp_path, tiny_model_dir):
    items = []
    for i, e in enumerate(corpus(200, seed=19)):
        if e["kind"] in ("image", "goal"):
            img = e["image"] if e["kind"] == "goal" else e
            items.append(("/image", _image(img["height"], img["width"], img["encoding"],
                                           img["step"], img["data"], 1000 + i, f"fuzz{i}")))
        if e["kind"] in ("command", "goal"):
            items.append(("/command", String(data=e["text"])))
        if e["kind"] == "compressed":
            items.append(("/compressed", Compressed(
                header=_header(1000 + i, f"fuzz{i}"), format=e["format"],
                data=np.frombuffer(e["data"], np.uint8))))
    items.insert(0, ("/command", String(data="the object")))
    bag = _write(tmp_path / "in", items)
    for topic in ("/image", "/compressed"):
        out = tmp_path / f"out{topic.replace('/', '_')}"
        assert _run(bag, out, tiny_model_dir, "--command-topic", "/command",
                    "--image-topic", topic) == 0
        frames = [m for t, m in items if t == topic]
        recs = [json.loads(x) for x in open(out / "frames.jsonl")]
        results = [m for _, m, _ in read_bag(out / "bag")["/lens/result"]]
        counts: dict[str, int] = {}
        for r in recs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        print(f"\nlens-bag run fuzz {topic}: {len(frames)} frames, {len(recs)} records, "
              f"statuses {counts}")
        assert [r["frame"] for r in recs] == list(range(len(frames)))
        assert [r.header.frame_id for r in results] == [f.header.frame_id for f in frames]


def test_unusable_inputs_exit_2_with_one_line(tmp_path, tiny_model_dir, capsys):
    bag = _write(tmp_path / "in", [("/command", String(data="x"))])  # no image topic at all
    assert _run(bag, tmp_path / "o1", tiny_model_dir, "--command-topic", "/command") == 2
    assert "no Image or CompressedImage topic" in capsys.readouterr().err
    for text, why in (("", "--command is empty"), ("a\x07b", "control character")):
        assert _run(bag, tmp_path / "o2", tiny_model_dir, "--command", text) == 2
        assert why in capsys.readouterr().err
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "metadata.yaml").write_text("{{{ not: [yaml\n\x00")
    assert _run(garbage, tmp_path / "o3", tiny_model_dir, "--command", "x") == 2
    err = capsys.readouterr().err
    assert "cannot be read as a rosbag2" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
