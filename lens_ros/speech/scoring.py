"""Confidence of a grammar decode from a second, unconstrained decode of the same audio.

pocketsphinx's grammar search always returns *some* sentence of the grammar. To tell a right
sentence from a forced one we compare, frame by frame, the acoustic score of the grammar path
with that of a free phone loop over the same frames: speech that is what the grammar says
scores close to the phone loop (log ratio ~ 0 per frame); a word that was forced onto different
sounds falls far below it. Computing the ratio per word catches the one wrong word ("the blue
chair" -> "the blue cube") that an utterance-level average hides.

Scores are pocketsphinx log units (``Decoder.get_logmath().log``; ~1e-4 nats each), per 10 ms
frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: words that carry no slot: their score is not a word confidence of its own
FUNCTION_WORDS = frozenset({"the", "a", "an", "of", "to", "from", "is", "me", "up", "at"})


@dataclass(frozen=True)
class Seg:
    """One word (or phone) of a decode: frames ``start``..``end`` inclusive (10 ms each),
    ``score`` its acoustic log score."""

    word: str
    start: int
    end: int
    score: float

    @property
    def frames(self) -> int:
        return self.end - self.start + 1


def span_score(segs: list[Seg], start: int, end: int) -> float:
    """Acoustic score of ``segs`` over frames start..end (a segment partly inside counts in
    proportion to its frames inside)."""
    total = 0.0
    for s in segs:
        inside = min(end, s.end) - max(start, s.start) + 1
        if inside > 0:
            total += s.score * inside / s.frames
    return total


def word_ratios(words: list[Seg], loop: list[Seg]) -> list[tuple[str, float]]:
    """[(word, log ratio per frame of the grammar word vs the phone loop over its frames)]."""
    return [(w.word, (w.score - span_score(loop, w.start, w.end)) / w.frames) for w in words]


def min_content_ratio(ratios: list[tuple[str, float]]) -> float:
    """The lowest per-word ratio among slot words (0.0 when there is none)."""
    vals = [r for w, r in ratios if w not in FUNCTION_WORDS]
    return min(vals) if vals else 0.0


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))
