"""Confirm-before-forward: a command whose confidence is in a grey band is held until the
operator says "yes" (forward it) or "no" (drop it), or until a timeout (drop it).

ROS-free; speech_node feeds it every :class:`SpeechResult` and acts on the returned
:class:`GateDecision`. The answer words come from the vocabulary (``confirm_words``,
``cancel_words``); they are never forwarded as commands themselves.
"""
from __future__ import annotations

from dataclasses import dataclass

from lens_ros.speech.recognizer import SpeechResult


@dataclass
class GateDecision:
    """What to do with one result.

    Attributes:
      forward (str): command text to publish on ``command`` now ("" = nothing).
      result (SpeechResult): the transcript to publish (its ``accepted``/``reason`` already
        say what happened: held, confirmed, cancelled ...).
      prompt (str): a question to echo to the operator ("" = none).
    """

    forward: str
    result: SpeechResult
    prompt: str = ""


class ConfirmGate:
    """Holds grey-band commands until confirmed.

    Arguments:
      confirm_below (float): accepted commands with confidence below this (0..1) are held;
        0 disables holding (every accepted command is forwarded at once).
      timeout_s (float): a held command is dropped after this many seconds without an answer.
      confirm_words, cancel_words (list[str]): the answers ("yes", "confirm" / "no", "cancel").
    """

    def __init__(self, confirm_below: float = 0.0, timeout_s: float = 8.0,
                 confirm_words=("yes", "confirm"), cancel_words=("no", "cancel")):
        self.confirm_below = float(confirm_below)
        self.timeout_s = float(timeout_s)
        self.confirm_words = set(confirm_words)
        self.cancel_words = set(cancel_words)
        self.pending: SpeechResult | None = None
        self._since = 0.0

    def is_answer(self, text: str) -> bool:
        return text in self.confirm_words or text in self.cancel_words

    def feed(self, res: SpeechResult, now: float) -> GateDecision:
        """Decide on one recognised utterance at time ``now`` (seconds, any monotonic clock)."""
        self.expire(now)
        if res.accepted and self.is_answer(res.text):
            return self.answer(res.text in self.confirm_words, res)
        if not res.accepted:
            return GateDecision("", res)
        if res.confidence >= self.confirm_below:
            if self.pending is not None:  # a clear new command replaces a held one
                self.pending = None
            return GateDecision(res.text, res)
        self.pending, self._since = res, now
        res.accepted = False
        res.reason = (f"confirm: holding {res.text!r} (confidence {res.confidence:.2f} < "
                      f"confirm_below {self.confirm_below:.2f}); " + self._how())
        return GateDecision("", res, f"did you say: {res.text}?")

    def _how(self) -> str:
        say = (f"say {sorted(self.confirm_words)[-1]!r} or {sorted(self.cancel_words)[-1]!r}, "
               "or ") if self.confirm_words and self.cancel_words else ""
        return f"{say}publish True/False on speech/confirm"

    def answer(self, yes: bool, res: SpeechResult | None = None) -> GateDecision:
        """An answer (spoken, or from a topic/service: ``res`` None) to the held command."""
        res = res or SpeechResult(text="yes" if yes else "no", confidence=1.0,
                                  backend="operator")
        held, self.pending = self.pending, None
        res.accepted = False
        if held is None:
            res.reason = "no_pending: an answer with no command waiting for confirmation"
            return GateDecision("", res)
        if yes:
            res.reason = f"confirmed: forwarded {held.text!r}"
            return GateDecision(held.text, res)
        res.reason = f"cancelled: dropped {held.text!r}"
        return GateDecision("", res)

    def expire(self, now: float) -> SpeechResult | None:
        """Drop the held command when its answer is overdue; returns it then (else None)."""
        if self.pending is not None and now - self._since > self.timeout_s:
            held, self.pending = self.pending, None
            held.reason = (f"cancelled: no answer within confirm_timeout_s {self.timeout_s:g} "
                           f"s, dropped {held.text!r}")
            return held
        return None
