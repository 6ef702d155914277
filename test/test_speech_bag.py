"""Spoken commands in a rosbag2 (no DDS): AudioChunk messages written and read with
``rosbags`` decode to the same PCM, and the recogniser finds the command in them. This is the
plumbing ``lens-bag`` needs to drive the chain (audio -> command -> mask) from a bag."""
from __future__ import annotations

import numpy as np
from rosbags.rosbag2 import Reader, Writer

from lens_ros.bag.io import make_typestore
from lens_ros.conversions.audio import chunk_to_pcm, pcm_to_chunks, stamp_seconds
from lens_ros.speech.recognizer import SpeechConfig, SpeechRecognizer
from helpers.speech_client import RATE, fixture_pcm, fixture_rows, framed

AUDIO = "lens_ros/msg/AudioChunk"


def test_audio_chunks_roundtrip_through_a_bag_and_are_recognised(tmp_path):
    ts = make_typestore()
    chunk, header, time_ = ts.types[AUDIO], ts.types["std_msgs/msg/Header"], \
        ts.types["builtin_interfaces/msg/Time"]
    row = fixture_rows()[0]
    pcm = framed(fixture_pcm(row))
    msgs = pcm_to_chunks(pcm, RATE, 0.1, chunk, header, time_, start=50.0, frame_id="mic")
    bag = tmp_path / "spoken"
    with Writer(bag, version=9) as writer:
        conn = writer.add_connection("/audio", AUDIO, typestore=ts)
        for msg in msgs:
            t_ns = int(round(stamp_seconds(msg.header.stamp) * 1e9))
            writer.write(conn, t_ns, ts.serialize_cdr(msg, AUDIO))
    rec = SpeechRecognizer(SpeechConfig())
    got, back = [], []
    with Reader(bag) as reader:
        for conn, _t, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            x, rate, _ = chunk_to_pcm(msg)
            back.append(x)
            got += rec.feed(x, rate, stamp=stamp_seconds(msg.header.stamp))
    got += [rec.decide(u) for u in rec.flush()]
    assert np.array_equal(np.concatenate(back), pcm)
    accepted = [r for r in got if r.accepted]
    assert [r.text for r in accepted] == [row["text"]]
    assert 50.5 < accepted[0].start_time < 51.0  # 1 s of quiet minus the 0.3 s pre-roll
