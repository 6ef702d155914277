"""Spoken commands from a bag's ``lens_ros/msg/AudioChunk`` topic, for ``lens-bag run
--audio-topic``: audio -> utterances -> accepted commands, offline and in bag time.

The audio goes through :class:`~lens_ros.speech.SpeechRecognizer`, the pipeline speech_node runs
live (same segmenter, backend and accept/reject decision, same ``config/speech.yaml``), so a bag
recorded with a microphone gives the commands the live chain would have forwarded.

Times are **bag time** (integer ns, the clock every topic of a bag shares): each chunk is fed with
its bag time and positions inside it are counted in samples, so the audio header clock may differ
from the camera's. A command takes effect at the **end of its speech** (the utterance's last
speech frame: the VAD hangover is not counted) and is applied from the frame nearest that time
(:func:`assign_to_frames`). Live, speech_node forwards it ``vad.hangover_s`` + decoding later.

Every utterance, accepted or not, gives one transcript record (a JSON-able dict):

  utterance     index in the stream (0, 1, ...)
  start_ns      bag time of the utterance's first sample (pre-roll included)
  end_ns        bag time of the end of its speech: when the command takes effect
  stamp_ns      start in the audio header clock (the ``speech/transcript`` header stamp)
  audio_frame_id  the audio header's frame_id (the microphone)
  text, confidence, alternatives, accepted, reason, backend, duration_s, decode_ms
                as ``lens_ros/msg/Transcript`` (reason codes: lens_ros.speech.recognizer.REASONS)
  command       the text when accepted, else None
  frame         index of the image frame the command was applied to (None: not accepted, or
                ends after the last frame)

Chunks that cannot be read (damaged CDR, unknown encoding, cut sample, bad rate) give a
``bad_audio`` record instead; consecutive chunks with the same error share one record
(``chunks`` counts them). Nothing here imports rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.serde import SerdeError

from lens_ros.bag.io import BagError, InputBag
from lens_ros.conversions.audio import chunk_to_pcm
from lens_ros.conversions.image import MessageTypes, make_header, stamp_to_ns
from lens_ros.speech.recognizer import SpeechConfig, SpeechRecognizer, SpeechResult
from lens_ros.speech.segmenter import FRAME_S, Utterance
from lens_ros.speech.types import AudioFormatError

AUDIO_CHUNK = "lens_ros/msg/AudioChunk"
TRANSCRIPT = "lens_ros/msg/Transcript"


@dataclass
class SpokenCommand:
    """One transcript record and when it takes effect.

    Attributes:
      stamp_ns (int): bag time (ns) of the end of the speech.
      command (str | None): the text to segment when accepted, else None.
      record (dict): the transcript record (module docstring).
    """

    stamp_ns: int
    command: str | None
    record: dict


def load_recognizer(speech_config: str | Path | None = None) -> SpeechRecognizer:
    """A recogniser with the ``speech_node`` settings of a ROS parameter file (the layout of
    ``config/speech.yaml``); None or "" = that file's defaults (``SpeechConfig()``).

    Raises:
      ValueError: the file does not exist or has unknown settings.
      VocabularyError, BackendUnavailableError: the backend cannot start (names the fix).
    """
    if not speech_config:
        return SpeechRecognizer(SpeechConfig())
    path = Path(speech_config)
    if not path.is_file():
        raise ValueError(f"speech config {str(path)!r} is not a file; give a ROS parameter file "
                         "like config/speech.yaml (speech_node: ros__parameters: ...)")
    return SpeechRecognizer(SpeechConfig.from_yaml(str(path)))


class AudioCommandReader:
    """Feed the messages of one AudioChunk topic, in bag-time order; :meth:`finish` returns
    every utterance as a :class:`SpokenCommand`, in time order.

    Arguments:
      bag (InputBag): the open bag (deserializes the messages).
      topic (str): the audio topic; its type must be ``lens_ros/msg/AudioChunk``.
      recognizer (SpeechRecognizer): a fresh recogniser (its stream state is used).
    Raises:
      BagError: ``topic`` is not an AudioChunk topic of ``bag``.
    """

    def __init__(self, bag: InputBag, topic: str, recognizer: SpeechRecognizer):
        msgtype = bag.topics.get(topic, (None,))[0]
        if msgtype != AUDIO_CHUNK:
            audio = sorted(t for t, (mt, _) in bag.topics.items() if mt == AUDIO_CHUNK)
            raise BagError(f"{topic} is not a {AUDIO_CHUNK} topic of {bag.path} (it is "
                           f"{msgtype or 'absent'}); audio topics: {audio} (record the "
                           "microphone as AudioChunk, e.g. with lens-say or speech_node's input)")
        self.bag, self.topic, self.rec = bag, topic, recognizer
        self.spoken: list[SpokenCommand] = []
        self._t0: int | None = None  # bag time of the first chunk: stamps are relative to it
        self._hdr_offset = 0  # bag time - audio header stamp of the newest chunk, ns
        self._frame_id = ""
        self._hangover_s = round(recognizer.config.vad.hangover_s / FRAME_S) * FRAME_S

    def add(self, conn, t_ns: int, raw: bytes) -> None:
        """One message of the topic (bag time ``t_ns``); bad chunks become ``bad_audio``."""
        if self._t0 is None:
            self._t0 = t_ns
        try:
            msg = self.bag.deserialize(raw, conn)
            pcm, rate, _ = chunk_to_pcm(msg)
            self._hdr_offset, self._frame_id = t_ns - stamp_to_ns(msg.header), msg.header.frame_id
            utts = self.rec.segment(pcm, rate, stamp=(t_ns - self._t0) * 1e-9)
        except (SerdeError, AudioFormatError) as err:
            self._bad(t_ns, err)
            return
        for utt in utts:
            self._add(utt, trailing_s=0.0 if utt.status == "too_long" else self._hangover_s)

    def finish(self) -> list[SpokenCommand]:
        """End of the stream (closes an open utterance); all records, in time order."""
        for utt in self.rec.flush():
            self._add(utt, trailing_s=0.0)
        return self.spoken

    def _add(self, utt: Utterance, trailing_s: float) -> None:
        res: SpeechResult = self.rec.decide(utt)
        start_ns = self._t0 + int(round((res.start_time or 0.0) * 1e9))
        end_ns = start_ns + int(round(max(0.0, utt.duration_s - trailing_s) * 1e9))
        command = res.text if res.accepted else None
        self.spoken.append(SpokenCommand(end_ns, command, {
            "utterance": len(self.spoken), "start_ns": start_ns, "end_ns": end_ns,
            "stamp_ns": start_ns - self._hdr_offset, "audio_frame_id": self._frame_id,
            "text": res.text, "confidence": float(res.confidence),
            "alternatives": list(res.alternatives), "accepted": bool(res.accepted),
            "reason": res.reason, "backend": res.backend, "duration_s": float(res.duration_s),
            "decode_ms": float(res.decode_ms), "command": command, "frame": None}))

    def _bad(self, t_ns: int, err: Exception) -> None:
        reason = f"bad_audio: chunk on {self.topic} at bag time {t_ns} ns: {err}"
        last = self.spoken[-1].record if self.spoken else None
        if last is not None and last.get("chunks") and last["error"] == str(err):
            last["chunks"] += 1
            return
        self.spoken.append(SpokenCommand(t_ns, None, {
            "utterance": len(self.spoken), "start_ns": t_ns, "end_ns": t_ns,
            "stamp_ns": t_ns - self._hdr_offset, "audio_frame_id": self._frame_id, "text": "",
            "confidence": 0.0, "alternatives": [], "accepted": False, "reason": reason,
            "backend": self.rec.backend.name, "duration_s": 0.0, "decode_ms": 0.0,
            "command": None, "frame": None, "chunks": 1, "error": str(err)}))


def assign_to_frames(spoken: list[SpokenCommand], frame_times_ns: list[int]
                     ) -> dict[int, SpokenCommand]:
    """Frame index -> the accepted command that becomes current at that frame.

    Each accepted command goes to the frame whose bag time is nearest its ``stamp_ns`` (the
    earlier frame on a tie) and stays current until the next one; of several commands nearest
    the same frame the last one said wins. A command ending more than one (median) frame
    interval after the last frame is applied to no frame. Sets each record's ``frame``.
    """
    times = np.asarray(frame_times_ns, dtype=np.int64)
    if times.size == 0:
        return {}
    gap = int(np.median(np.diff(times))) if times.size > 1 else 0
    out: dict[int, SpokenCommand] = {}
    for sc in sorted(spoken, key=lambda s: s.stamp_ns):
        if sc.command is None or sc.stamp_ns > times[-1] + gap:
            continue
        index = int(np.argmin(np.abs(times - sc.stamp_ns)))
        sc.record["frame"] = index
        out[index] = sc
    return out


def transcript_message(record: dict, types: MessageTypes, transcript_cls):
    """The ``lens_ros/msg/Transcript`` of a transcript record, built with ``transcript_cls`` and
    the Header/Time classes of ``types``; its header stamp is the start of the utterance in the
    audio header clock."""
    return transcript_cls(
        header=make_header(types, max(0, record["stamp_ns"]), record["audio_frame_id"]),
        text=record["text"], confidence=record["confidence"],
        alternatives=list(record["alternatives"]), accepted=record["accepted"],
        reason=record["reason"], backend=record["backend"], duration_s=record["duration_s"],
        decode_ms=record["decode_ms"])
