"""The speech benchmark's corpus (bench/speech_corpus.py): the voice split keeps held-out voices
apart from tuning voices, commands are in the grammar, near-misses and sentences are not."""
from __future__ import annotations

import importlib.util
import sys

from conftest import REPO
from lens_ros.speech.vocabulary import CommandMatcher, load_vocabulary


def corpus_module():
    spec = importlib.util.spec_from_file_location("speech_corpus",
                                                  REPO / "bench" / "speech_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_held_out_voices_share_neither_base_voice_nor_variant_with_tuning_voices():
    c = corpus_module()
    bases = ["en-us", "en-gb", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-rp"]
    variants = ["", "f1", "f2", "m3", "klatt2", "croak", "Demonic", "whisper"]
    split = c.split_voices(bases, variants)
    assert split == c.split_voices(list(reversed(bases)), list(reversed(variants)))  # fixed
    assert split["tuning"] and split["heldout"]
    parts = {k: ({v.split("+")[0] for v in vs}, {v.partition("+")[2] for v in vs})
             for k, vs in split.items()}
    assert not parts["tuning"][0] & parts["heldout"][0]
    assert not parts["tuning"][1] & parts["heldout"][1]
    assert c.is_standard("en-us+f2") and c.is_standard("en-gb") and \
        not c.is_standard("en-us+croak")


def test_commands_are_in_the_grammar_and_near_misses_and_sentences_are_not():
    c = corpus_module()
    v = load_vocabulary()
    m = CommandMatcher(v)
    texts = c.make_texts(v, 40, 20, seed=3)
    assert texts == c.make_texts(v, 40, 20, seed=3)
    kinds = {k: [t for t, kind, _ in texts if kind == k] for k in ("command", "oov", "oog")}
    assert len(kinds["command"]) == 40 == len(set(kinds["command"]))
    assert all(m.matches(t) for t in kinds["command"])
    assert len(kinds["oov"]) == 20 and not any(m.matches(t) for t in kinds["oov"])
    assert kinds["oog"] and not any(m.matches(t) for t in kinds["oog"])
    assert {slot for _, kind, slot in texts if kind == "oov"} <= {"colour", "object",
                                                                  "relation"}
