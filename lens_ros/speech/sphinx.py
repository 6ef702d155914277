"""pocketsphinx backends: ``grammar`` (JSGF from the vocabulary, the default) and ``dictation``
(the wheel's general English language model).

Both use the US English acoustic model and CMU dictionary shipped inside the ``pocketsphinx``
wheel: no download, ~0.1 s to load, 16 kHz audio.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from lens_ros.speech.audio import comfort_noise, pad_silence, to_rate
from lens_ros.speech.types import (ASRBackend, BackendUnavailableError, Transcript,
                                  VocabularyError)
from lens_ros.speech.scoring import (FUNCTION_WORDS, Seg, min_content_ratio, sigmoid,
                                     word_ratios)
from lens_ros.speech.vocabulary import (CommandMatcher, Vocabulary, build_jsgf,
                                        resolve_pronunciations)

#: words of the decoder's segmentation that are not speech
_NON_SPEECH = {"<s>", "</s>", "<sil>", "(NULL)"}
#: beams of the retry when the normal search ends off the grammar (seen with some voices)
#: confidence calibration (tuned on the benchmark's tuning voices only)
CONFIDENCE_CENTER, CONFIDENCE_SCALE, WORD_WEIGHT = -18.0, 3.0, 0.5
_WIDE_BEAMS = {"beam": 1e-100, "pbeam": 1e-100, "wbeam": 1e-80, "lpbeam": 1e-80,
               "lponlybeam": 1e-80}


def _decoder(**kwargs):
    try:
        import pocketsphinx
    except ImportError as err:
        raise BackendUnavailableError("pocketsphinx is not installed: pip install -c "
                                      "requirements/constraints.txt pocketsphinx") from err
    try:
        return pocketsphinx.Decoder(samprate=16000, loglevel="FATAL", **kwargs)
    except (RuntimeError, ValueError, KeyError) as err:
        raise BackendUnavailableError(f"pocketsphinx did not start with {kwargs}: {err}") from err


def _add_word(decoder, word: str, phones: str, source: str) -> None:
    """Add a pronunciation; a word already in the dictionary gets it as an alternative."""
    names = [word] if not decoder.lookup_word(word) else [f"{word}({k})" for k in range(2, 10)]
    for name in names:
        try:
            decoder.add_word(name, phones, update=False)
            return
        except RuntimeError:
            continue
    raise VocabularyError(f"{source}: pocketsphinx refused the pronunciation {word!r}: "
                          f"{phones!r}; use phones of the CMU set (AA AE AH ... ZH, no stress "
                          "digits)")


def _utterance(decoder, pcm: np.ndarray) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()


def _alternatives(decoder, best: str, n: int, keep=None, budget: int = 20) -> list[str]:
    """Up to ``n`` distinct N-best texts other than ``best`` (looks at ``budget`` entries);
    ``keep(text) -> bool`` filters them (the grammar's N-best also lists partial paths)."""
    out: list[str] = []
    if n <= 0:
        return out
    try:
        for hyp in itertools.islice(decoder.nbest(), budget):
            text = " ".join(hyp.hypstr.split()) if hyp is not None else ""
            if text and text != best and text not in out and (keep is None or keep(text)):
                out.append(text)
                if len(out) >= n:
                    break
    except (RuntimeError, ValueError):  # no lattice for this utterance
        pass
    return out


def confidence_of(scores: dict, center: float = CONFIDENCE_CENTER,
                  scale: float = CONFIDENCE_SCALE, word_weight: float = WORD_WEIGHT) -> float:
    """0..1 confidence from the grammar backend's ``scores`` {"lr", "word_lr"} (see
    :class:`GrammarBackend`); the benchmark re-scores saved scores with it."""
    x = scores["lr"] + word_weight * scores["word_lr"]
    return sigmoid((x - center) / max(scale, 1e-3))


class GrammarBackend(ASRBackend):
    """pocketsphinx constrained by the JSGF grammar of a :class:`Vocabulary`.

    Confidence: the utterance is also decoded with a free phone loop (:mod:`scoring`).
    ``lr`` = (grammar path - phone loop) per frame of the recognised words, ``word_lr`` = the
    lowest such ratio of one slot word (``Transcript.weakest`` names that word: where a word
    the vocabulary lacks was most likely replaced by a known one). ``confidence =
    sigmoid((lr + word_weight * word_lr - confidence_center) / confidence_scale)``: 0.5 at the
    center. Defaults were tuned on the
    tuning voices of ``bench/bench_speech.py`` only (docs/speech.md, "Measured").

    Arguments:
      vocabulary (Vocabulary): the command language.
      max_alternatives (int): N-best alternatives to report (0: none). Costly with a grammar:
        building the lattice took ~0.5 s per utterance, 3x the decoding itself.
      confidence_center, confidence_scale, word_weight (float): the calibration above.
    """

    name = "grammar"

    def __init__(self, vocabulary: Vocabulary, max_alternatives: int = 0,
                 confidence_center: float = CONFIDENCE_CENTER,
                 confidence_scale: float = CONFIDENCE_SCALE, word_weight: float = WORD_WEIGHT):
        import pocketsphinx

        self.vocabulary = vocabulary
        self.max_alternatives = int(max_alternatives)
        self.center, self.scale = float(confidence_center), max(float(confidence_scale), 1e-3)
        self.word_weight = float(word_weight)
        self.jsgf = build_jsgf(vocabulary)
        self._matcher = CommandMatcher(vocabulary)
        self._phone_lm = pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin")
        self._decoder = self._make_decoder({})
        self._wide = None  # built on first need
        self._logmath = self._decoder.get_logmath()

    def _make_decoder(self, beams: dict):
        # topn 8 (default 4 Gaussians per frame): +3 % exact matches for +20 % CPU, measured
        d = _decoder(lm=None, bestpath=False, topn=8, **beams)
        extra = resolve_pronunciations(self.vocabulary, d.lookup_word)
        for word, phones in extra.items():
            _add_word(d, word, phones, self.vocabulary.source)
        try:
            d.add_jsgf_string("commands", self.jsgf)
        except (RuntimeError, ValueError) as err:
            raise BackendUnavailableError(f"pocketsphinx rejected the grammar built from "
                                          f"{self.vocabulary.source}: {err}") from err
        d.add_allphone_file("phones", self._phone_lm)
        d.activate_search("commands")
        return d

    def _segs(self, d) -> list[Seg]:
        return [Seg(s.word, s.start_frame, s.end_frame, self._log(s.ascore)) for s in d.seg()
                if s.word not in _NON_SPEECH and not s.word.startswith("[")
                and s.start_frame >= 0]

    def _decode(self, d, pcm: np.ndarray) -> tuple[str, float, list[Seg], list[str]]:
        """(text, score, word segments, alternatives) of the grammar search; text "" if none."""
        d.activate_search("commands")
        _utterance(d, pcm)
        hyp = d.hyp()
        if hyp is None or not hyp.hypstr.strip():
            return "", 0.0, [], []
        text = " ".join(hyp.hypstr.split())
        alts = _alternatives(d, text, self.max_alternatives, self._matcher.matches)
        return text, self._log(hyp.score), self._segs(d), alts

    def _log(self, p: float) -> float:
        return float(self._logmath.log(p)) if p > 0 else -1e9

    def transcribe(self, pcm16: np.ndarray, rate: int) -> Transcript:
        t0 = time.perf_counter()
        pcm = comfort_noise(pad_silence(to_rate(pcm16, rate, self.sample_rate),
                                        self.sample_rate, 0.25))
        d = self._decoder
        text, score, words, alts = self._decode(d, pcm)
        detail = ""
        if not text:  # the search ended off the grammar: retry once with wide beams
            if self._wide is None:
                self._wide = self._make_decoder(_WIDE_BEAMS)
            d = self._wide
            text, score, words, alts = self._decode(d, pcm)
            detail = "wide-beam retry"
        if not text:
            return Transcript("", 0.0, [], (time.perf_counter() - t0) * 1e3,
                              "no path through the grammar fits the audio")
        loop_decoder = self._decoder  # normal beams: the phone loop needs no retry
        loop_decoder.activate_search("phones")
        _utterance(loop_decoder, pcm)
        loop = loop_decoder.hyp()
        loop_segs = self._segs(loop_decoder) if loop is not None else []
        frames = sum(w.frames for w in words)
        lr = (score - self._log(loop.score)) / max(frames, 1) if loop is not None else 0.0
        ratios = word_ratios(words, loop_segs)
        word_lr = min_content_ratio(ratios)
        conf = confidence_of({"lr": lr, "word_lr": word_lr}, self.center, self.scale,
                             self.word_weight)
        weakest = min((r for r in ratios if r[0] not in FUNCTION_WORDS), key=lambda r: r[1],
                      default=("", 0.0))[0]
        detail = f"lr={lr:.1f}, word_lr={word_lr:.1f}" + (f", {detail}" if detail else "")
        return Transcript(text, conf, alts, (time.perf_counter() - t0) * 1e3, detail,
                          {"lr": lr, "word_lr": word_lr, "words": float(len(words)),
                           "frames": float(frames), "retry": float(bool(detail.count("retry")))},
                          weakest)


class DictationBackend(ASRBackend):
    """pocketsphinx with its general English trigram model: free text, low accuracy on
    commands (docs/speech.md), useful as a baseline and for logging what was said.

    Confidence: the lattice posterior of the best path (pocketsphinx ``bestpath``), 0..1.

    Arguments:
      max_alternatives (int): N-best alternatives to report.
    """

    name = "dictation"

    def __init__(self, max_alternatives: int = 2):
        self.max_alternatives = int(max_alternatives)
        self._decoder = _decoder(bestpath=True)

    def transcribe(self, pcm16: np.ndarray, rate: int) -> Transcript:
        t0 = time.perf_counter()
        pcm = comfort_noise(pad_silence(to_rate(pcm16, rate, self.sample_rate),
                                        self.sample_rate, 0.25))
        _utterance(self._decoder, pcm)
        hyp = self._decoder.hyp()
        text = " ".join(hyp.hypstr.split()) if hyp is not None else ""
        if not text:
            return Transcript("", 0.0, [], (time.perf_counter() - t0) * 1e3, "nothing recognised")
        alts = _alternatives(self._decoder, text, self.max_alternatives)
        return Transcript(text, float(min(max(hyp.prob, 0.0), 1.0)), alts,
                          (time.perf_counter() - t0) * 1e3)
