"""Confirm-before-forward gate, the per-word confidence features and the vocabulary's answer
words (ROS-free)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lens_ros.speech.confirm import ConfirmGate
from lens_ros.speech.recognizer import SpeechResult
from lens_ros.speech.scoring import Seg, min_content_ratio, span_score, word_ratios
from lens_ros.speech.types import VocabularyError
from lens_ros.speech.vocabulary import CommandMatcher, Vocabulary, load_vocabulary


def heard(text: str, confidence: float = 0.9, accepted: bool = True) -> SpeechResult:
    return SpeechResult(text=text, confidence=confidence, accepted=accepted, backend="grammar")


def test_clear_commands_pass_and_grey_ones_wait_for_yes():
    gate = ConfirmGate(confirm_below=0.8, timeout_s=5.0)
    assert gate.feed(heard("the red cube", 0.95), 0.0).forward == "the red cube"
    held = gate.feed(heard("the blue ball", 0.6), 1.0)
    assert held.forward == "" and not held.result.accepted
    assert held.result.reason.startswith("confirm:") and "'the blue ball'" in held.result.reason
    assert held.prompt == "did you say: the blue ball?"
    yes = gate.feed(heard("yes"), 2.0)
    assert yes.forward == "the blue ball" and not yes.result.accepted
    assert yes.result.reason.startswith("confirmed")
    assert gate.pending is None


def test_no_and_timeout_drop_the_held_command():
    gate = ConfirmGate(confirm_below=0.8, timeout_s=5.0)
    gate.feed(heard("the blue ball", 0.6), 0.0)
    no = gate.feed(heard("cancel"), 1.0)
    assert no.forward == "" and no.result.reason.startswith("cancelled")
    gate.feed(heard("the green mug", 0.6), 10.0)
    assert gate.expire(14.0) is None
    dropped = gate.expire(15.5)
    assert dropped.text == "the green mug" and dropped.reason.startswith("cancelled: no answer")
    late_yes = gate.feed(heard("yes"), 16.0)
    assert late_yes.forward == "" and late_yes.result.reason.startswith("no_pending")


def test_topic_answers_and_a_clear_command_replaces_a_held_one():
    gate = ConfirmGate(confirm_below=0.8)
    gate.feed(heard("the blue ball", 0.6), 0.0)
    assert gate.answer(True).forward == "the blue ball"
    gate.feed(heard("the blue ball", 0.6), 1.0)
    assert gate.feed(heard("the red cube", 0.99), 2.0).forward == "the red cube"
    assert gate.pending is None and gate.answer(True).forward == ""


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["the red cube", "the mug", "yes", "no", "confirm",
                                           "cancel"]),
                          st.floats(0.0, 1.0), st.booleans()), max_size=12),
       st.floats(0.0, 1.0))
def test_answers_are_never_forwarded_and_only_accepted_commands_are(events, below):
    gate = ConfirmGate(confirm_below=below, timeout_s=3.0)
    accepted_commands = set()
    for k, (text, conf, ok) in enumerate(events):
        if ok and text not in ("yes", "no", "confirm", "cancel"):
            accepted_commands.add(text)
        out = gate.feed(heard(text, conf, ok), float(k))
        assert out.forward in accepted_commands | {""}
        assert not (out.result.accepted and gate.is_answer(out.result.text))


def test_per_word_ratio_compares_each_word_with_the_phone_loop_over_its_frames():
    loop = [Seg("K", 0, 9, -100.0), Seg("Y", 10, 19, -100.0), Seg("UW", 20, 29, -100.0)]
    assert span_score(loop, 5, 14) == pytest.approx(-100.0)
    words = [Seg("the", 0, 9, -150.0), Seg("cube", 10, 29, -2200.0)]
    ratios = word_ratios(words, loop)
    assert ratios == [("the", pytest.approx(-5.0)), ("cube", pytest.approx(-100.0))]
    assert min_content_ratio(ratios) == pytest.approx(-100.0)  # "the" carries no slot
    assert min_content_ratio([("the", -3.0)]) == 0.0


def test_answer_words_are_in_the_grammar_and_yaml_booleans_are_a_clear_error(tmp_path):
    v = load_vocabulary()
    m = CommandMatcher(v)
    assert all(m.matches(w) for w in v.confirm_words + v.cancel_words)
    for cmd in ("the cube under the table", "the mug inside the basket",
                "the lamp beside the chair", "the cup on the shelf"):
        assert m.matches(cmd), cmd
    bad = tmp_path / "v.yaml"
    bad.write_text("objects: [cube]\nrelations: [on, under]\n")
    with pytest.raises(VocabularyError, match='quote words like "on"'):
        load_vocabulary(bad)
    assert Vocabulary(objects=["cube"]).words() == {"the", "cube"}
    assert Vocabulary(objects=["cube"], confirm_words=["yes"]).words() == {"the", "cube", "yes"}
