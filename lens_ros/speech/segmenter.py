"""Cut a continuous audio stream into utterances: an energy voice-activity detector with an
adaptive noise floor, onset debounce, pre-roll, hangover and min/max utterance length.

Memory is bounded whatever the stream: at most ``max_utterance_s + pre_roll_s`` of audio plus
one partial 10 ms frame is held, so a 10-minute (or endless) stream costs the same as a short
one. Work is O(samples): one vectorised energy per 10 ms frame and a small state machine.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from lens_ros.speech.audio import as_pcm16, clipped_fraction, level_dbfs

FRAME_S = 0.01  #: analysis frame, seconds


@dataclass
class VADConfig:
    """Voice-activity and utterance settings (``vad.*`` parameters of speech_node).

    Attributes:
      threshold_db (float): a frame is speech when its RMS level is this many dB above the
        running noise floor (and above ``min_level_db``).
      min_level_db (float): absolute gate in dBFS; quieter frames are never speech.
      onset_s (float): this much consecutive speech opens an utterance (debounces clicks).
      hangover_s (float): this much non-speech closes it (covers pauses between words).
      pre_roll_s (float): audio kept from before the onset (soft first consonants).
      min_utterance_s (float): utterances with less speech than this are reported "too_short"
        and not decoded (coughs, door slams).
      max_utterance_s (float): an utterance is cut here and reported "too_long" (continuous
        noise, someone talking at length); the noise floor then jumps to that audio's level.
      floor_rise_s (float): time constant with which the noise floor follows louder
        background (it follows quieter background within a few frames).
    """

    threshold_db: float = 10.0
    min_level_db: float = -55.0
    onset_s: float = 0.05
    hangover_s: float = 0.5
    pre_roll_s: float = 0.3
    min_utterance_s: float = 0.25
    max_utterance_s: float = 8.0
    floor_rise_s: float = 5.0

    def __post_init__(self):
        for name in ("onset_s", "hangover_s", "min_utterance_s", "max_utterance_s",
                     "floor_rise_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"vad.{name}={getattr(self, name)!r} must be > 0 seconds")
        if self.pre_roll_s < 0:
            raise ValueError(f"vad.pre_roll_s={self.pre_roll_s!r} must be >= 0 seconds")
        if self.max_utterance_s <= self.min_utterance_s:
            raise ValueError(f"vad.max_utterance_s={self.max_utterance_s} must exceed "
                             f"vad.min_utterance_s={self.min_utterance_s}")


@dataclass
class Utterance:
    """One stretch of speech cut from the stream.

    Attributes:
      pcm (np.ndarray): (N,) int16 mono at ``rate``: pre-roll + speech + hangover.
      rate (int): Hz.
      start_sample (int): stream index (at ``rate``) of ``pcm[0]``.
      speech_s (float): seconds of frames classified as speech.
      status (str): "ok", "too_short" (less than min_utterance_s of speech) or "too_long"
        (cut at max_utterance_s).
      clipped_fraction (float): share of samples at full scale (over-driven input).
      level_db (float): RMS level of ``pcm`` in dBFS.
    """

    pcm: np.ndarray
    rate: int
    start_sample: int
    speech_s: float
    status: str
    clipped_fraction: float = 0.0
    level_db: float = -100.0

    @property
    def duration_s(self) -> float:
        """Length of ``pcm`` in seconds."""
        return len(self.pcm) / self.rate


class UtteranceSegmenter:
    """Streaming energy VAD. ``feed()`` chunks of any size; it returns finished utterances.

    Arguments:
      config (VADConfig): thresholds and lengths.
      rate (int): sample rate of the fed PCM, Hz.
    """

    def __init__(self, config: VADConfig | None = None, rate: int = 16000):
        self.config = config or VADConfig()
        self.rate = int(rate)
        self._flen = int(round(FRAME_S * self.rate))
        c = self.config
        self._onset = max(1, int(round(c.onset_s / FRAME_S)))
        self._hang = max(1, int(round(c.hangover_s / FRAME_S)))
        self._max = max(2, int(round(c.max_utterance_s / FRAME_S)))
        self._rise = FRAME_S / c.floor_rise_s
        self._ring: deque = deque(maxlen=int(round(c.pre_roll_s / FRAME_S)) + self._onset)
        self._rest = np.zeros(0, np.int16)  # partial frame carried to the next feed
        self._frames: list[np.ndarray] = []  # frames of the open utterance
        self._energies: list[float] = []
        self._start = 0
        self._run_speech = 0
        self._run_silence = 0
        self._speech_frames = 0
        self.frame_index = 0  #: frames analysed since the start
        self.floor_db: float | None = None  #: current noise floor estimate, dBFS
        self.level_db = -100.0  #: level of the newest frame, dBFS

    @property
    def in_speech(self) -> bool:
        """True while an utterance is open."""
        return bool(self._frames)

    @property
    def buffered_samples(self) -> int:
        """Samples held right now (bounded by max_utterance_s + pre_roll_s + one frame)."""
        return (len(self._rest) + sum(len(f) for f in self._frames)
                + sum(len(f) for f in self._ring))

    def feed(self, pcm16: np.ndarray) -> list[Utterance]:
        """Analyse the next chunk (mono int16 at ``rate``); returns utterances finished in it."""
        pcm = as_pcm16(pcm16)
        data = np.concatenate([self._rest, pcm]) if len(self._rest) else pcm
        n = len(data) // self._flen
        self._rest = data[n * self._flen:].copy()
        if n == 0:
            return []
        frames = data[: n * self._flen].reshape(n, self._flen)
        power = np.mean(frames.astype(np.float64) ** 2, axis=1) / 32768.0 ** 2
        energies = 10.0 * np.log10(power + 1e-12)
        out = []
        for frame, e in zip(frames, energies):
            done = self._step(frame, float(e))
            if done is not None:
                out.append(done)
        return out

    def flush(self) -> list[Utterance]:
        """End of stream: close an open utterance (as if followed by silence)."""
        if not self._frames:
            return []
        return [self._close("ok" if self._speech_frames * FRAME_S >= self.config.min_utterance_s
                            else "too_short")]

    def _step(self, frame: np.ndarray, e: float) -> Utterance | None:
        c = self.config
        self.level_db = e
        if self.floor_db is None:
            self.floor_db = e
        speech = e > self.floor_db + c.threshold_db and e > c.min_level_db
        index = self.frame_index
        self.frame_index += 1
        if not self._frames:  # listening
            self._ring.append(frame)
            if speech:
                self._run_speech += 1
            else:
                self._run_speech = 0
                step = 0.3 if e < self.floor_db else self._rise  # fast down, slow up
                self.floor_db += step * (e - self.floor_db)
            if self._run_speech >= self._onset:
                self._frames = list(self._ring)
                self._energies = [e] * len(self._frames)
                self._start = (index + 1 - len(self._frames)) * self._flen
                self._speech_frames = self._run_speech
                self._run_speech = self._run_silence = 0
                self._ring.clear()
            return None
        self._frames.append(frame)
        self._energies.append(e)
        if speech:
            self._speech_frames += 1
            self._run_silence = 0
        else:
            self._run_silence += 1
        if self._run_silence >= self._hang:
            enough = self._speech_frames * FRAME_S >= c.min_utterance_s
            return self._close("ok" if enough else "too_short")
        if len(self._frames) >= self._max:
            # a "speech" stretch this long is most likely a louder background: follow it
            self.floor_db = float(np.percentile(self._energies, 10))
            return self._close("too_long")
        return None

    def _close(self, status: str) -> Utterance:
        pcm = np.concatenate(self._frames)
        utt = Utterance(pcm=pcm, rate=self.rate, start_sample=self._start,
                        speech_s=self._speech_frames * FRAME_S, status=status,
                        clipped_fraction=clipped_fraction(pcm), level_db=level_dbfs(pcm))
        self._frames, self._energies = [], []
        self._speech_frames = self._run_silence = self._run_speech = 0
        return utt
