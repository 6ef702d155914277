"""Test-side helpers for the speech_node tests: a probe node that publishes AudioChunk
messages and records ``command`` and ``speech/transcript``, and the fixture clips."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lens_ros.speech.audio import read_wav
from lens_ros.speech.recognizer import SpeechConfig, SpeechRecognizer
from helpers.ros_probe import ProbeNode, latest_diagnostic

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "speech"
RATE = 16000


def fixture_rows(kind: str = "command") -> list[dict]:
    with open(FIXTURES / "manifest.tsv") as fh:
        return [r for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == kind]


def fixture_pcm(row: dict) -> np.ndarray:
    return read_wav(FIXTURES / row["file"])[0]


def framed(pcm: np.ndarray, silence_s: float = 1.0, rate: int = RATE) -> np.ndarray:
    """``pcm`` between two stretches of digital silence, as :meth:`SpeechProbe.say` sends it."""
    gap = np.zeros(int(silence_s * rate), np.int16)
    return np.concatenate([gap, pcm, gap])


def stream_commands(recognizer, pcm: np.ndarray, chunk_s: float = 0.1) -> list[str]:
    """The commands ``recognizer`` forwards for ``framed(pcm)`` fed in chunks (in-process)."""
    x, n = framed(pcm), int(chunk_s * RATE)
    results = [r for i in range(0, len(x), n) for r in recognizer.feed(x[i:i + n], RATE)]
    results += [recognizer.decide(u) for u in recognizer.flush()]
    return [r.text for r in results if r.accepted]


class SpeechProbe(ProbeNode):
    """A probe node (own context): publishes audio, records commands and transcripts."""

    def __init__(self, name: str = "speech_probe") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        from lens_ros.msg import AudioChunk, Transcript

        super().__init__(name)
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST, depth=500)
        self.audio_pub = self.node.create_publisher(AudioChunk, "audio", qos)
        self.commands, self.transcripts, self.diagnostics = [], [], []
        self.command_sub = self.node.create_subscription(
            String, "command", lambda m: self.commands.append(m.data), qos)
        self.transcript_sub = self.node.create_subscription(
            Transcript, "speech/transcript", self.transcripts.append, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      self.diagnostics.append, qos)
        from std_msgs.msg import Bool

        self.echoes: list[str] = []
        self.echo_sub = self.node.create_subscription(
            String, "speech/echo", lambda m: self.echoes.append(m.data), qos)
        self.confirm_pub = self.node.create_publisher(Bool, "speech/confirm", qos)
        self.Bool = Bool
        self.AudioChunk = AudioChunk
        self.sent = 0

    def wait_listener(self, timeout: float = 30.0, command_subscribers: int = 1) -> None:
        """Wait until speech_node hears our audio, we hear its command and transcript, and
        (its diagnostic says) its command reaches ``command_subscribers`` matched readers:
        a message published before a pair of endpoints has matched is lost, and the pairs
        match one by one."""
        assert self.spin_until(lambda: self.audio_pub.get_subscription_count() > 0, timeout), \
            "speech_node's audio subscription did not appear"
        assert self.spin_until(lambda: self.command_sub.get_publisher_count() > 0
                               and self.transcript_sub.get_publisher_count() > 0, timeout), \
            "speech_node's command/transcript publishers are not matched with the probe"
        assert self.spin_until(
            lambda: int(self.latest_diagnostic().get("command_subscribers", 0))
            >= command_subscribers, timeout), \
            f"speech_node's command does not reach {command_subscribers} subscriber(s)"

    def say(self, pcm: np.ndarray, rate: int = RATE, chunk_s: float = 0.1,
            silence_s: float = 1.0, stamp: float = 1000.0, **chunk_fields) -> None:
        """Publish ``pcm`` framed by ``silence_s`` of quiet as chunks (as fast as DDS takes
        them); ``chunk_fields`` override message fields (bad-input tests)."""
        from builtin_interfaces.msg import Time
        from rclpy.duration import Duration
        from std_msgs.msg import Header

        from lens_ros.conversions.audio import pcm_to_chunks

        msgs = pcm_to_chunks(framed(pcm, silence_s, rate), rate, chunk_s, self.AudioChunk,
                             Header, Time, stamp, frame_id="test_mic")
        for msg in msgs:
            for key, value in chunk_fields.items():
                setattr(msg, key, value)
            self.audio_pub.publish(msg)
            self.executor.spin_once(timeout_sec=0)
        self.sent += len(msgs)
        # KEEP_LAST history: wait until the node has every chunk before the next burst
        assert self.audio_pub.wait_for_all_acked(Duration(seconds=30)), "audio not acknowledged"

    def latest_diagnostic(self, prefix: str = "speech_node") -> dict:
        return latest_diagnostic(self.diagnostics, prefix)


NODE = ["-m", "lens_ros.ros.speech_node", "--ros-args"]


def recognised_rows(n: int) -> list[dict]:
    """The first ``n`` fixture clips the recogniser gets right in-process when streamed as
    the probe sends them (the node must then give the same commands: these tests check the
    transport, the recogniser's accuracy is test_speech_recognition's job)."""
    r = SpeechRecognizer(SpeechConfig())
    rows = [row for row in fixture_rows()[:12]
            if stream_commands(r, fixture_pcm(row)) == [row["text"]]]
    return rows[:n]
