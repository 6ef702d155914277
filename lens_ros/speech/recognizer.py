"""From a stream of audio chunks to accepted commands: resample -> segment -> recognise ->
decide. The ROS node is a thin adapter around :class:`SpeechRecognizer`; tests, the benchmark
and WAV files use it directly.

Every utterance ends in one :class:`SpeechResult`: accepted (forward ``text`` as a command) or
not, with a ``reason`` that starts with a code (``REASONS``) and explains itself.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from lens_ros.speech.audio import StreamResampler, as_pcm16, check_rate
from lens_ros.speech.segmenter import Utterance, UtteranceSegmenter, VADConfig
from lens_ros.speech.types import ASRBackend, SpeechError, Transcript
from lens_ros.speech.vocabulary import CommandMatcher, load_vocabulary

BACKENDS = ("grammar", "dictation", "whisper")
#: reason codes (first word of ``SpeechResult.reason``); "" when accepted
REASONS = ("no_match", "low_confidence", "out_of_grammar", "too_short", "too_long",
           "recognizer_error", "bad_audio", "dropped", "clipped",
           # confirm-before-forward (lens_ros.speech.confirm)
           "confirm", "confirmed", "cancelled", "no_pending")
CLIP_WARNING = 0.01  #: clipped-sample share above which a result carries a gain warning


@dataclass
class SpeechConfig:
    """Settings of the speech pipeline (the parameters of speech_node; defaults in
    ``config/speech.yaml``).

    Attributes:
      backend (str): "grammar" (pocketsphinx + JSGF from the vocabulary, default),
        "dictation" (pocketsphinx general English LM) or "whisper" (needs ``model_dir``).
      vocabulary_file (str): vocabulary YAML; "" = the packaged config/speech_vocabulary.yaml.
        Builds the grammar and the out-of-grammar check of every backend.
      model_dir (str): local Whisper model directory (backend "whisper" only).
      confidence_threshold (float): results below this confidence (0..1) are not forwarded.
      accept_out_of_grammar (bool): forward text outside the vocabulary's language (for the
        free-text backends); the grammar backend never produces such text.
      sample_rate (int): rate the recogniser runs at, Hz; input at other rates is resampled.
      max_alternatives (int): N-best alternatives reported per utterance (costly, see
        GrammarBackend).
      vad (VADConfig): utterance segmentation (``vad.*`` parameters).
    """

    backend: str = "grammar"
    vocabulary_file: str = ""
    model_dir: str = ""
    confidence_threshold: float = 0.5
    accept_out_of_grammar: bool = False
    sample_rate: int = 16000
    max_alternatives: int = 0
    vad: VADConfig = field(default_factory=VADConfig)

    def __post_init__(self):
        if isinstance(self.vad, dict):
            self.vad = VADConfig(**self.vad)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is unknown; use one of {BACKENDS}")
        if not 0.0 <= float(self.confidence_threshold) <= 1.0:
            raise ValueError(f"confidence_threshold={self.confidence_threshold!r} must be in 0..1")
        check_rate(self.sample_rate)

    @classmethod
    def from_dict(cls, d: dict) -> "SpeechConfig":
        """Build from a flat or nested dict (YAML ``ros__parameters``); unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown speech settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str, node: str = "speech_node") -> "SpeechConfig":
        """The pipeline settings of a ROS parameter file (``config/speech.yaml``), ignoring the
        node-only ones (microphone, queue, autostart, diagnostics): for offline tools."""
        import yaml

        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        params = (data.get(node) or {}).get("ros__parameters") or {}
        known = {f.name for f in fields(cls)}
        return cls.from_dict({k: v for k, v in params.items() if k in known})

    def to_dict(self) -> dict:
        """Nested dict (the shape of ``config/speech.yaml``)."""
        return asdict(self)


def make_backend(config: SpeechConfig) -> ASRBackend:
    """Start the configured backend (raises BackendUnavailableError / VocabularyError)."""
    if config.backend == "grammar":
        from lens_ros.speech.sphinx import GrammarBackend
        return GrammarBackend(load_vocabulary(config.vocabulary_file or None),
                              max_alternatives=config.max_alternatives)
    if config.backend == "dictation":
        from lens_ros.speech.sphinx import DictationBackend
        return DictationBackend(max_alternatives=config.max_alternatives)
    from lens_ros.speech.whisper import WhisperBackend
    return WhisperBackend(config.model_dir)


@dataclass
class SpeechResult:
    """The outcome of one utterance (fields of ``lens_ros/msg/Transcript``).

    Attributes:
      text (str): what was heard ("" when nothing); forwarded as the command when accepted.
      confidence (float): 0..1. alternatives (list[str]): N-best, best first.
      accepted (bool): True when ``text`` should go to the command topic.
      reason (str): "" when accepted (or a gain warning); else "<code>: explanation".
      backend (str): recogniser name. duration_s (float): utterance length.
      decode_ms (float): recognition time. scores (dict): the backend's raw confidence
        features. weakest (str): the word the backend is least sure of.
      start_time (float | None): stream time (seconds, same clock as the ``stamp`` given to
        :meth:`SpeechRecognizer.segment`) of the start.
    """

    text: str = ""
    confidence: float = 0.0
    alternatives: list[str] = field(default_factory=list)
    accepted: bool = False
    reason: str = ""
    backend: str = ""
    duration_s: float = 0.0
    decode_ms: float = 0.0
    start_time: float | None = None
    scores: dict = field(default_factory=dict)
    weakest: str = ""

    @property
    def code(self) -> str:
        """The reason code ("" when accepted without warning)."""
        return self.reason.split(":", 1)[0] if self.reason else ""


class SpeechRecognizer:
    """Stream in, decisions out. Not thread-safe: call ``segment`` from one thread and
    ``decide`` from one (possibly other) thread, as speech_node does.

    Arguments:
      config (SpeechConfig): settings.
      backend (ASRBackend | None): an already started backend (default: ``make_backend``).
    """

    def __init__(self, config: SpeechConfig | None = None, backend: ASRBackend | None = None):
        self.config = config or SpeechConfig()
        self.vocabulary = load_vocabulary(self.config.vocabulary_file or None)
        self.matcher = CommandMatcher(self.vocabulary)
        self.backend = backend or make_backend(self.config)
        self.rate = int(self.config.sample_rate)
        self.segmenter = UtteranceSegmenter(self.config.vad, self.rate)
        self._resampler: StreamResampler | None = None
        self._samples = 0  # samples at self.rate fed to the segmenter
        self._clock: tuple[int, float] | None = None  # (sample index, stamp) of the last chunk

    def segment(self, pcm16: np.ndarray, rate: int, stamp: float | None = None
                ) -> list[Utterance]:
        """Feed one chunk (mono int16 at ``rate`` Hz, first sample at time ``stamp`` seconds);
        returns the utterances it completed. Raises AudioFormatError on bad input."""
        pcm, rate = as_pcm16(pcm16), check_rate(rate)
        if rate != self.rate:
            if self._resampler is None or self._resampler.rate_in != rate:
                self._resampler = StreamResampler(rate, self.rate)
            pcm = self._resampler.process(pcm)
        if stamp is not None:
            self._clock = (self._samples, float(stamp))
        self._samples += len(pcm)
        return self.segmenter.feed(pcm)

    def flush(self) -> list[Utterance]:
        """End of stream: the open utterance, if any."""
        return self.segmenter.flush()

    def start_time(self, utt: Utterance) -> float | None:
        """Stream time of ``utt``'s first sample from the newest chunk stamp (None if unknown)."""
        if self._clock is None:
            return None
        index, stamp = self._clock
        return stamp + (utt.start_sample - index) / self.rate

    def decide(self, utt: Utterance) -> SpeechResult:
        """Recognise one utterance (unless too short/long) and decide whether to forward it."""
        res = SpeechResult(backend=self.backend.name, duration_s=utt.duration_s,
                           start_time=self.start_time(utt))
        if utt.status == "too_short":
            res.reason = (f"too_short: {utt.speech_s:.2f} s of speech < vad.min_utterance_s "
                          f"{self.config.vad.min_utterance_s} s (a click or a cough?)")
            return res
        if utt.status == "too_long":
            res.reason = (f"too_long: sound for more than vad.max_utterance_s "
                          f"{self.config.vad.max_utterance_s} s, not decoded (continuous noise?)")
            return self._warn_clipping(res, utt)
        try:
            tr = self.backend.transcribe(utt.pcm, utt.rate)
        except SpeechError as err:
            res.reason = f"recognizer_error: {err}"
            return res
        return self._warn_clipping(self._judge(res, tr), utt)

    def _judge(self, res: SpeechResult, tr: Transcript) -> SpeechResult:
        res.text, res.confidence, res.alternatives = tr.text, float(tr.confidence), tr.alternatives
        res.decode_ms, res.scores, res.weakest = float(tr.ms), dict(tr.scores), tr.weakest
        threshold = self.config.confidence_threshold
        if not tr.text:
            res.reason = f"no_match: {tr.detail or 'nothing recognised'}"
        elif tr.confidence < threshold:
            weakest = (f"; least sure of {tr.weakest!r} (misheard, or a word the vocabulary "
                       "lacks in its place)") if tr.weakest else ""
            res.reason = (f"low_confidence: {tr.confidence:.2f} < confidence_threshold "
                          f"{threshold:.2f}" + (f" ({tr.detail})" if tr.detail else "") +
                          weakest)
        elif not self.config.accept_out_of_grammar and not self.matcher.matches(tr.text):
            res.reason = ("out_of_grammar: not in the vocabulary's command language (extend "
                          "vocabulary_file or set accept_out_of_grammar)")
        else:
            res.accepted = True
        return res

    @staticmethod
    def _warn_clipping(res: SpeechResult, utt: Utterance) -> SpeechResult:
        if utt.clipped_fraction > CLIP_WARNING:
            note = (f"clipped input: {100 * utt.clipped_fraction:.1f} % of samples at full "
                    "scale, lower the microphone gain")
            res.reason = f"{res.reason}; {note}" if res.reason else f"clipped: {note}"
        return res

    def feed(self, pcm16: np.ndarray, rate: int, stamp: float | None = None
             ) -> list[SpeechResult]:
        """``segment`` + ``decide`` in one call (single-threaded use)."""
        return [self.decide(u) for u in self.segment(pcm16, rate, stamp)]

    def transcribe_clip(self, pcm16: np.ndarray, rate: int) -> list[SpeechResult]:
        """A whole recording (e.g. a WAV file) through a fresh segmenter: one result per
        utterance found, [] for silence or steady noise."""
        seg = UtteranceSegmenter(self.config.vad, self.rate)
        pcm = as_pcm16(pcm16)
        if check_rate(rate) != self.rate:
            pcm = StreamResampler(rate, self.rate).process(pcm, final=True)
        keep = self.segmenter, self._clock
        self.segmenter, self._clock = seg, None
        try:
            utts = seg.feed(pcm) + seg.flush()
            return [self.decide(u) for u in utts]
        finally:
            self.segmenter, self._clock = keep
