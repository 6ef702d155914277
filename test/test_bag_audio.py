"""``lens-bag run --audio-topic``: a bag with spoken commands drives the whole chain offline
(audio -> command -> mask). The bag is built here from 160x120 frames and an ``/audio``
AudioChunk track holding two committed fixture commands and one out-of-grammar sentence
(test/data/speech/); the tiny model segments every frame."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from lens_ros.bag import cli as bag_cli
from lens_ros.bag.io import BagError, InputBag, make_typestore
from lens_ros.bag.runner import SKIPPED, BagRunner, RunConfig
from lens_ros.bag.speech_commands import (AudioCommandReader, SpokenCommand, assign_to_frames,
                                          load_recognizer)
from lens_ros.conversions.audio import pcm_to_chunks
from lens_ros.speech.audio import read_wav
from helpers.bags import read_bag

DATA = Path(__file__).parent / "data" / "speech"
RATE, CHUNK_S = 16000, 0.1
H, W = 120, 160
T0 = 1_700_000_000 * 10**9  # bag time (and camera clock) of the first sample, ns
AUDIO_CLOCK = 50.0  # the microphone's header clock differs from the camera's (seconds)
FRAME_DT = 250_000_000  # 4 frames per second
GAP_S = 1.5  # quiet between clips: longer than the VAD hangover, so one utterance per clip
AUDIO, IMAGE = "lens_ros/msg/AudioChunk", "sensor_msgs/msg/Image"


def _manifest() -> dict[str, dict]:
    with open(DATA / "manifest.tsv") as fh:
        return {r["file"]: r for r in csv.DictReader(fh, delimiter="\t")}


# (file, accepted): two commands and a sentence outside the command language
CLIPS = (("cmd00_en-us_140.wav", True), ("oog0_en-us_175.wav", False),
         ("cmd04_en-us_175.wav", True))


def _speech_track() -> tuple[np.ndarray, list[float]]:
    """(mono int16 at RATE: 1 s quiet, the clips separated by GAP_S, 1 s quiet; end of each
    clip's speech in seconds from the start, from its last sample above -40 dBFS)."""
    parts, ends, t = [np.zeros(RATE, np.int16)], [], 1.0
    for name, _ in CLIPS:
        pcm, rate = read_wav(DATA / name)
        assert rate == RATE
        ends.append(t + (np.nonzero(np.abs(pcm) > 300)[0][-1] + 1) / RATE)
        t += len(pcm) / RATE + GAP_S
        parts += [pcm, np.zeros(int(GAP_S * RATE), np.int16)]
    parts[-1] = np.zeros(RATE, np.int16)
    return np.concatenate(parts), ends


def write_spoken_bag(path: Path, chunk_edit=None) -> tuple[Path, list[float], int]:
    """A rosbag2 (mcap) with /camera/image (rgb8, 4 Hz) and /audio (0.1 s AudioChunks, each
    recorded when its last sample arrived); returns (path, speech ends in s, frame count).
    ``chunk_edit(index, msg)`` may spoil chunks (bad-input tests)."""
    ts = make_typestore()
    Image, Header, Time = (ts.types[t] for t in (IMAGE, "std_msgs/msg/Header",
                                                  "builtin_interfaces/msg/Time"))
    pcm, ends = _speech_track()
    chunks = pcm_to_chunks(pcm, RATE, CHUNK_S, ts.types[AUDIO], Header, Time, AUDIO_CLOCK,
                           frame_id="mic")
    n_frames = int(len(pcm) / RATE * 1e9 // FRAME_DT) + 1
    msgs = []
    for i, chunk in enumerate(chunks):
        if chunk_edit is not None:
            chunk_edit(i, chunk)
        t = T0 + int(round((i * CHUNK_S + len(chunk.data) / 2 / RATE) * 1e9))
        msgs.append((t, "/audio", ts.serialize_cdr(chunk, AUDIO)))
    for i in range(n_frames):
        t = T0 + i * FRAME_DT
        rgb = np.full((H, W, 3), 90, np.uint8)
        rgb[30:90, 20 + i:70 + i] = (220, 40, 40)
        hdr = Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="camera")
        img = Image(header=hdr, height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3,
                    data=rgb.reshape(-1))
        msgs.append((t, "/camera/image", ts.serialize_cdr(img, IMAGE)))
    with Writer(path, version=9) as w:
        conns = {"/audio": w.add_connection("/audio", AUDIO, typestore=ts),
                 "/camera/image": w.add_connection("/camera/image", IMAGE, typestore=ts)}
        for t, topic, raw in sorted(msgs, key=lambda m: m[0]):
            w.write(conns[topic], t, raw)
    return path, ends, n_frames


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_spoken_commands_in_a_bag_drive_audio_to_command_to_mask(tmp_path, tiny_model_dir):
    bag, ends, n_frames = write_spoken_bag(tmp_path / "spoken")
    out = tmp_path / "out"
    argv = ["run", str(bag), "-o", str(out), "--model", str(tiny_model_dir), "--audio-topic",
            "/audio", "--max-new-tokens", "8", "--no-progress"]
    assert bag_cli.main(argv) == 0
    texts = [_manifest()[name]["text"] for name, _ in CLIPS]

    # one transcript record per utterance, accepted or not
    spoken = _jsonl(out / "transcripts.jsonl")
    assert [s["accepted"] for s in spoken] == [ok for _, ok in CLIPS]
    assert [s["command"] for s in spoken] == [texts[0], None, texts[2]]
    assert spoken[0]["text"] == texts[0] and spoken[2]["text"] == texts[2]
    assert spoken[1]["reason"].split(":")[0] in ("no_match", "low_confidence", "out_of_grammar")
    frame_t = T0 + FRAME_DT * np.arange(n_frames)
    for s, end in zip(spoken, ends):  # speech ends where the clip's sound ends (+1 chunk)
        assert abs(s["end_ns"] - (T0 + end * 1e9)) < 0.25e9, (s, end)
        assert s["start_ns"] < s["end_ns"]
        # the command is applied to the frame nearest the end of its speech
        expect = int(np.argmin(np.abs(frame_t - s["end_ns"]))) if s["accepted"] else None
        assert s["frame"] == expect
    first, second = spoken[0]["frame"], spoken[2]["frame"]
    assert 0 < first < second < n_frames - 1

    # the report: a record per frame; the command changes exactly at those frames
    frames = _jsonl(out / "frames.jsonl")
    assert [r["frame"] for r in frames] == list(range(n_frames))
    expected = [None] * first + [texts[0]] * (second - first) + [texts[2]] * (n_frames - second)
    assert [r["command"] for r in frames] == expected
    assert all(r["status"] == SKIPPED and r["error"] == "no command yet" for r in frames[:first])
    assert all(r["status"] != SKIPPED for r in frames[first:])
    assert len(list(csv.DictReader(open(out / "frames.csv")))) == n_frames

    # the output bag: audio copied, a transcript per utterance, the spoken commands, and a
    # LensResult whose command is exactly the spoken text for every frame from the first one
    got = read_bag(out / "bag")
    assert len(got["/audio"]) == len(read_bag(bag)["/audio"])
    transcripts = [m for _, m, _ in got["/lens/speech/transcript"]]
    assert [(m.text, m.accepted) for m in transcripts] == [(s["text"], s["accepted"])
                                                            for s in spoken]
    for m, s in zip(transcripts, spoken):  # stamped in the microphone's clock
        assert m.header.frame_id == "mic"
        assert m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == s["stamp_ns"]
        assert AUDIO_CLOCK < s["stamp_ns"] * 1e-9 < AUDIO_CLOCK + 12
    assert [(t, m.data) for t, m, _ in got["/lens/command"]] == [
        (spoken[0]["end_ns"], texts[0]), (spoken[2]["end_ns"], texts[2])]
    results = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m
               for _, m, _ in got["/lens/result"]}
    assert sorted(results) == frame_t[first:].tolist()
    assert results[int(frame_t[first])].command == texts[0]
    assert results[int(frame_t[second])].command == texts[2]
    assert [r.command for r in results.values()] == expected[first:]

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["utterances"], summary["spoken_commands"],
            summary["applied_commands"]) == (n_frames, 3, 2, 2)
    assert summary["skipped"] == first and summary["computed"] == n_frames - first


def test_bad_audio_chunks_are_reported_and_the_stream_goes_on(tmp_path):
    def spoil(i, msg):
        if i in (3, 4, 5):  # in the leading quiet: three chunks in an unknown encoding
            msg.encoding = "MP3"
        if i == 40:  # in the gap after the first command: a cut sample
            msg.data = msg.data[:-1]

    bag, _, _ = write_spoken_bag(tmp_path / "bad", chunk_edit=spoil)
    with InputBag(bag) as b:
        reader = AudioCommandReader(b, "/audio", load_recognizer())
        for conn, t_ns, raw in b.messages(["/audio"]):
            reader.add(conn, t_ns, raw)
        spoken = reader.finish()
    bad = [s.record for s in spoken if s.record["reason"].startswith("bad_audio")]
    assert [r["chunks"] for r in bad] == [3, 1]
    assert "MP3" in bad[0]["reason"] and "cut" in bad[1]["reason"]
    assert [s.command for s in spoken if s.command] == [_manifest()[CLIPS[0][0]]["text"],
                                                        _manifest()[CLIPS[2][0]]["text"]]
    assert [s.record["utterance"] for s in spoken] == list(range(len(spoken)))


def _sc(t_ns: int, command: str | None) -> SpokenCommand:
    return SpokenCommand(t_ns, command, {"frame": None})


def test_commands_go_to_the_nearest_frame():
    frames = [0, 100, 200, 300]
    spoken = [_sc(-50, "early"), _sc(140, "nearer 100"), _sc(150, "tie: earlier frame"),
              _sc(160, None), _sc(260, "a"), _sc(290, "b, said later, wins"),
              _sc(399, "within one frame interval"), _sc(401, "after the end")]
    at = assign_to_frames(spoken, frames)
    assert {i: s.command for i, s in at.items()} == {
        0: "early", 1: "tie: earlier frame", 3: "within one frame interval"}
    assert [s.record["frame"] for s in spoken] == [0, 1, 1, None, 3, 3, 3, None]
    assert assign_to_frames(spoken, []) == {}


def test_audio_source_is_exclusive_and_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bag_cli.make_parser().parse_args(["run", "b", "-o", "o", "--model", "m", "--command",
                                          "x", "--audio-topic", "/audio"])
    with pytest.raises(ValueError, match="needs audio_topic"):
        RunConfig(command="x", speech_config="config/speech.yaml")
    bag, _, _ = write_spoken_bag(tmp_path / "b")
    runner = BagRunner(None, RunConfig(audio_topic="/camera/image"), progress=False)
    with pytest.raises(BagError, match="not a lens_ros/msg/AudioChunk topic.*'/audio'"):
        runner.run(bag, tmp_path / "o1")
    runner = BagRunner(None, RunConfig(audio_topic="/audio", transcript_topic="/audio"),
                       progress=False)
    with pytest.raises(BagError, match="already a topic.*--transcript-topic"):
        runner.run(bag, tmp_path / "o2")
    assert bag_cli.main(["run", str(bag), "-o", str(tmp_path / "o3"), "--model", "m",
                         "--audio-topic", "/audio", "--speech-config", "no/such.yaml"]) == 2
    assert "no/such.yaml" in capsys.readouterr().err
