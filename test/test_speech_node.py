"""speech_node in a subprocess over real DDS: audio chunks in, commands and transcripts out;
bad chunks, noise and a failed configure give statuses, never a crash."""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import yaml

from conftest import REPO
from lens_ros.speech.audio import float_to_pcm16
from lens_ros.speech.recognizer import SpeechConfig
from helpers.speech_client import NODE, RATE, SpeechProbe, fixture_pcm, recognised_rows

@pytest.fixture
def start_node(spawn):
    """``start_node(*ros_args) -> SpeechProbe``: speech_node in a subprocess and a probe; at
    teardown the probe closes and the node must still be running (no crash)."""
    started = []

    def _start(*ros_args: str) -> SpeechProbe:
        proc = spawn(NODE + list(ros_args))
        probe = SpeechProbe(f"speech_probe_{len(started)}")
        started.append((proc, probe))
        return probe

    yield _start
    for proc, probe in started:
        probe.close()
        assert proc.poll() is None, proc.log.read_text()


def test_config_file_matches_declared_parameters_and_dataclasses():
    from lens_ros.ros.speech_node import PARAMETERS

    with open(REPO / "config" / "speech.yaml") as fh:
        params = yaml.safe_load(fh)["speech_node"]["ros__parameters"]
    flat = {k: v for k, v in params.items() if k != "vad"}
    flat.update({f"vad.{k}": v for k, v in params["vad"].items()})
    declared = {name: default for name, default, _, _ in PARAMETERS}
    assert flat == declared
    defaults = SpeechConfig().to_dict()
    assert SpeechConfig.from_yaml(str(REPO / "config" / "speech.yaml")) == SpeechConfig()
    for f in fields(SpeechConfig):
        if f.name == "vad":
            assert params["vad"] == defaults["vad"]
        else:
            assert params[f.name] == defaults[f.name], f.name


@pytest.mark.ros
def test_spoken_commands_reach_the_command_topic(start_node):
    rows = recognised_rows(3)
    probe = start_node()
    probe.wait_listener()
    for k, row in enumerate(rows):
        probe.say(fixture_pcm(row), stamp=1000.0 + 10 * k)
    texts = [row["text"] for row in rows]
    def accepted():
        return [t for t in probe.transcripts if t.accepted]

    assert probe.spin_until(lambda: len(accepted()) >= len(texts), 60), \
        (probe.commands, [t.reason for t in probe.transcripts])
    assert probe.spin_until(lambda: len(probe.commands) >= len(texts), 10)
    assert probe.commands == texts
    assert [t.text for t in accepted()] == texts
    first = accepted()[0]
    assert first.backend == "grammar" and 0.5 <= first.confidence <= 1.0
    assert first.header.frame_id == "test_mic" and first.decode_ms > 0
    # stamped with the utterance start: the chunk stamps plus the leading second of quiet,
    # minus the pre-roll
    assert 1000.3 <= first.header.stamp.sec + first.header.stamp.nanosec * 1e-9 <= 1001.1
    assert 1.0 < first.duration_s < 4.0
    # noise is reported with accepted=false and forwards nothing
    n_tr = len(probe.transcripts)
    noise = float_to_pcm16(np.random.default_rng(0).standard_normal(RATE) * 0.1)
    probe.say(noise, stamp=2000.0)
    assert probe.spin_until(lambda: len(probe.transcripts) > n_tr, 30)
    assert not probe.transcripts[-1].accepted and probe.transcripts[-1].reason
    probe.spin_until(lambda: False, 1.0)
    assert probe.commands == texts


@pytest.mark.ros
def test_bad_chunks_are_reported_and_the_node_keeps_listening(start_node):
    row = recognised_rows(1)[0]
    probe = start_node()
    probe.wait_listener()
    pcm = fixture_pcm(row)
    probe.say(pcm[:4000], encoding="MP3")
    probe.say(pcm[:4000], sample_rate=0)
    bad = probe.AudioChunk(sample_rate=RATE, channels=1, encoding="S16LE", data=b"\x01" * 7)
    probe.audio_pub.publish(bad)
    assert probe.spin_until(lambda: len(probe.transcripts) >= 3, 30), \
        [t.reason for t in probe.transcripts]
    reasons = [t.reason for t in probe.transcripts]
    assert any("bad_audio" in r and "'MP3'" in r for r in reasons), reasons
    assert any("bad_audio" in r and "sample rate 0" in r for r in reasons), reasons
    assert any("bad_audio" in r and "7 bytes" in r for r in reasons), reasons
    assert not any(t.accepted for t in probe.transcripts)
    assert probe.spin_until(lambda: probe.latest_diagnostic().get("bad_chunks"), 10)
    diag = probe.latest_diagnostic()
    assert int(diag["bad_chunks"]) >= 3
    probe.say(pcm)  # still listening
    assert probe.spin_until(lambda: probe.commands == [row["text"]], 60), \
        [t.reason for t in probe.transcripts]


@pytest.mark.ros
def test_a_missing_microphone_is_reported_and_the_topic_still_works(start_node):
    """sounddevice/PortAudio or the device may be missing on a robot: a WARN status, no crash."""
    row = recognised_rows(1)[0]
    probe = start_node("-p", "microphone_device:=no_such_microphone")
    probe.wait_listener()
    assert probe.spin_until(lambda: "microphone" in probe.latest_diagnostic().get(
        "message", ""), 20), probe.latest_diagnostic()
    diag = probe.latest_diagnostic()
    assert diag["level"] == 1 and "no_such_microphone" in diag["message"]
    probe.say(fixture_pcm(row))
    assert probe.spin_until(lambda: probe.commands == [row["text"]], 60)


@pytest.mark.ros
def test_empty_grammar_fails_configure_then_a_good_one_recovers(start_node, tmp_path,
                                                                rclpy_node):
    from lifecycle_msgs.srv import ChangeState, GetState
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from conftest import spin_until

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    probe = start_node("-p", f"vocabulary_file:={empty}")
    node, ctx = rclpy_node
    get_state = node.create_client(GetState, "/speech_node/get_state")
    change = node.create_client(ChangeState, "/speech_node/change_state")
    set_params = node.create_client(SetParameters, "/speech_node/set_parameters")
    assert get_state.wait_for_service(timeout_sec=30)

    def call(client, request):
        fut = client.call_async(request)
        assert spin_until(node, fut.done, 30)
        return fut.result()

    assert probe.spin_until(lambda: probe.latest_diagnostic().get("level") == 2, 30)
    diag = probe.latest_diagnostic()
    assert "is empty" in diag["message"] and str(empty) in diag["message"]
    assert call(get_state, GetState.Request()).current_state.label == "unconfigured"
    req = SetParameters.Request(parameters=[
        Parameter("vocabulary_file", value="").to_parameter_msg()])
    assert call(set_params, req).results[0].successful
    for label in ("configure", "activate", "deactivate", "activate"):
        req = ChangeState.Request()
        req.transition.label = label
        assert call(change, req).success, label
    assert call(get_state, GetState.Request()).current_state.label == "active"
    probe.wait_listener()


@pytest.mark.ros
def test_confidence_threshold_applies_at_once(start_node, rclpy_node):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from conftest import spin_until

    row = recognised_rows(1)[0]
    probe = start_node()
    probe.wait_listener()
    node, _ = rclpy_node
    set_params = node.create_client(SetParameters, "/speech_node/set_parameters")
    assert set_params.wait_for_service(timeout_sec=30)
    fut = set_params.call_async(SetParameters.Request(parameters=[
        Parameter("confidence_threshold", value=1.0).to_parameter_msg()]))
    assert spin_until(node, fut.done, 30) and fut.result().results[0].successful
    probe.say(fixture_pcm(row))
    assert probe.spin_until(lambda: probe.transcripts, 60)
    heard = probe.transcripts[-1]
    assert heard.text == row["text"] and not heard.accepted
    assert heard.reason.startswith("low_confidence") and probe.commands == []


@pytest.mark.ros
def test_grey_band_commands_wait_for_confirmation_and_are_echoed(start_node):
    """confirm_below 1.0 holds every command: True on speech/confirm forwards it, False drops
    it; confirm_echo says back what was understood on speech/echo."""
    row = recognised_rows(1)[0]
    probe = start_node("-p", "confirm_below:=1.0", "-p", "confirm_echo:=log")
    probe.wait_listener()
    assert probe.spin_until(lambda: probe.confirm_pub.get_subscription_count() > 0
                            and probe.echo_sub.get_publisher_count() > 0, 30)
    probe.say(fixture_pcm(row))
    assert probe.spin_until(lambda: probe.transcripts, 60)
    held = probe.transcripts[-1]
    assert held.text == row["text"] and not held.accepted and held.reason.startswith("confirm:")
    assert probe.spin_until(lambda: probe.echoes == [f"did you say: {row['text']}?"], 10)
    assert probe.commands == []
    probe.confirm_pub.publish(probe.Bool(data=True))
    assert probe.spin_until(lambda: probe.commands == [row["text"]], 20), probe.transcripts
    assert probe.spin_until(lambda: probe.echoes[-1] == f"segmenting: {row['text']}", 10)
    assert probe.transcripts[-1].reason.startswith("confirmed")
    probe.say(fixture_pcm(row), stamp=2000.0)
    assert probe.spin_until(lambda: len(probe.echoes) == 3, 60), probe.echoes
    probe.confirm_pub.publish(probe.Bool(data=False))
    assert probe.spin_until(lambda: probe.transcripts[-1].reason.startswith("cancelled"), 20)
    probe.spin_until(lambda: False, 1.0)
    assert probe.commands == [row["text"]]


@pytest.mark.ros
def test_lens_say_waits_for_speech_node_not_any_subscriber(start_node, spawn, tmp_path):
    """A bag recorder's audio subscription does not count: lens-say names the listener it
    waits for and gives up with a clear message; with speech_node up the command arrives."""
    import shutil
    import subprocess
    import sys

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup_env.sh installs it)")
    from helpers.speech_client import SpeechProbe

    other = SpeechProbe("bag_recorder_probe")  # subscribes to nothing; add an audio reader
    other.node.create_subscription(other.AudioChunk, "audio", lambda m: None, 10)
    try:
        say = [sys.executable, "-m", "lens_ros.ros.say", "the red cube", "--wait-s", "2"]
        out = subprocess.run(say, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert "no node named 'speech_node'" in out.stderr and "/audio" in out.stderr
    finally:
        other.close()
    probe = start_node()
    probe.wait_listener()
    out = subprocess.run(say[:-1] + ["20", "--fast"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert probe.spin_until(lambda: probe.commands == ["the red cube"], 60), \
        [(t.text, t.reason) for t in probe.transcripts]
