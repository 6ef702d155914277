"""What every speech backend shares: the :class:`Transcript` result, the :class:`ASRBackend`
interface and the speech error classes.

Audio in the core is always mono int16 PCM (``np.ndarray`` of shape (N,), dtype int16, values
-32768..32767) at a stated sample rate in Hz; :mod:`lens_ros.speech.audio` converts other
encodings and rates. Nothing here imports rclpy.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from lens_ros.core import LensError, Status


class SpeechError(LensError):
    """Base class of the errors the speech package raises on purpose."""

    status = Status.BAD_COMMAND


class AudioFormatError(SpeechError, ValueError):
    """Raised when audio bytes or arrays cannot be turned into mono int16 PCM at a usable rate."""


class VocabularyError(SpeechError, ValueError):
    """Raised when a vocabulary file is missing, empty, malformed or has unpronounceable words."""


class BackendUnavailableError(SpeechError, RuntimeError):
    """Raised when a backend cannot start: package not installed, model directory missing."""


@dataclass
class Transcript:
    """What a backend heard in one utterance.

    Attributes:
      text (str): best hypothesis, lower case, single spaces, no punctuation; "" when the
        backend found nothing (for the grammar backend: no path through the grammar).
      confidence (float): 0..1; backend-specific (see each backend's docstring).
      alternatives (list[str]): further distinct hypotheses, best first (may be empty).
      ms (float): wall-clock decoding time in milliseconds.
      detail (str): backend note, e.g. why ``text`` is empty.
      scores (dict[str, float]): raw confidence features (backend-specific, for tuning).
      weakest (str): the word of ``text`` the backend is least sure of ("" when not known):
        where a word the vocabulary lacks was most likely replaced.
    """

    text: str
    confidence: float
    alternatives: list[str] = field(default_factory=list)
    ms: float = 0.0
    detail: str = ""
    scores: dict = field(default_factory=dict)
    weakest: str = ""


class ASRBackend(abc.ABC):
    """An offline recogniser: one utterance of PCM in, one :class:`Transcript` out.

    Implementations keep their model loaded between calls and are not thread-safe: call
    :meth:`transcribe` from one thread (the node's worker).
    """

    #: registry name: "grammar", "dictation" or "whisper"
    name: str = ""
    #: the sample rate (Hz) the model wants; other rates are resampled by :meth:`transcribe`
    sample_rate: int = 16000

    @abc.abstractmethod
    def transcribe(self, pcm16: np.ndarray, rate: int) -> Transcript:
        """Recognise one utterance.

        Arguments:
          pcm16 (np.ndarray): (N,) int16 mono samples of one utterance (leading and trailing
            silence welcome).
          rate (int): sample rate of ``pcm16`` in Hz; resampled to :attr:`sample_rate` if needed.
        Returns:
          Transcript: ``text`` "" when nothing was recognised (never raises for silence/noise).
        Raises:
          AudioFormatError: ``pcm16`` is not 1-D int16 or ``rate`` is unusable.
        """

    def close(self) -> None:
        """Free the model (optional)."""
