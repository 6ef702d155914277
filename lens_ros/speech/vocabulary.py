"""The spoken command language: a vocabulary file (``config/speech_vocabulary.yaml``) turned
into a JSGF grammar for pocketsphinx and into a matcher that tells whether any backend's text is
in the language.

Users extend the language by adding words to the YAML lists; :func:`build_jsgf` writes the
grammar. One rule table (:func:`grammar_rules`) feeds both the JSGF text and the matcher, so
the two cannot disagree.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import yaml

from lens_ros.speech.types import VocabularyError

_WORD = re.compile(r"^[a-z][a-z']*$")
_PHONE = re.compile(r"^[A-Z]{1,3}$")
_TOKEN = re.compile(r"<\w+>|[\[\]()|]|[^\s\[\]()|<>]+")


@dataclass
class Vocabulary:
    """Word lists of the command language (each entry one or more lower-case words).

    Attributes:
      verbs (list[str]): optional opening, "pick up", "find".
      determiners (list[str]): articles that open a noun phrase, "the".
      ordinals (list[str]): "second", before a superlative or before a noun with a side.
      superlatives (list[str]): "largest", "leftmost".
      sizes, colours, textures (list[str]): attribute words, in that order before the noun.
      objects (list[str]): nouns, "cube", "mug"; a noun phrase needs one.
      sides (list[str]): after the noun, "from the left".
      relations (list[str]): between two noun phrases, "left of".
      analogies (list[str]): after "colored like", "the sky".
      affordances (list[str]): after "something [colour]", "you could roll".
      phrases (list[str]): whole commands, "the party hat".
      confirm_words, cancel_words (list[str]): answers to a held command ("yes" / "no", see
        speech_node's ``confirm_below``; none: answer on the ``speech/confirm`` topic only);
        recognised, never forwarded as commands.
      pronunciations (dict[str, str]): word -> CMU phones for words not in the dictionary.
      source (str): the file it came from (for error messages).
    """

    verbs: list[str] = field(default_factory=list)
    determiners: list[str] = field(default_factory=lambda: ["the"])
    ordinals: list[str] = field(default_factory=list)
    superlatives: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    textures: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    sides: list[str] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)
    analogies: list[str] = field(default_factory=list)
    affordances: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    confirm_words: list[str] = field(default_factory=list)
    cancel_words: list[str] = field(default_factory=list)
    pronunciations: dict[str, str] = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self):
        for f in fields(self):
            if f.name in ("pronunciations", "source"):
                continue
            entries = getattr(self, f.name)
            if entries is None:
                entries = []
            if not isinstance(entries, list):
                raise VocabularyError(f"{self.source}: `{f.name}` must be a list of words, got "
                                      f"{type(entries).__name__} {entries!r}")
            clean = []
            for entry in entries:
                if isinstance(entry, bool):
                    raise VocabularyError(f"{self.source}: `{f.name}` has the YAML boolean "
                                          f"{entry!r}: quote words like \"on\", \"off\", "
                                          "\"yes\" and \"no\"")
                text = " ".join(str(entry).lower().split())
                if not all(_WORD.match(w) for w in text.split()) or not text:
                    raise VocabularyError(f"{self.source}: `{f.name}` entry {entry!r} must be "
                                          "letters (and apostrophes) only, e.g. 'left of'")
                if text not in clean:
                    clean.append(text)
            setattr(self, f.name, clean)
        if not isinstance(self.pronunciations, dict):
            raise VocabularyError(f"{self.source}: `pronunciations` must map word -> phones")
        for word, phones in self.pronunciations.items():
            if not _WORD.match(str(word)) or not phones or \
                    not all(_PHONE.match(p) for p in str(phones).split()):
                raise VocabularyError(f"{self.source}: pronunciation {word!r}: {phones!r} must be "
                                      "a lower-case word and CMU phones, e.g. "
                                      "'selfie: S EH L F IY'")
        if not (self.objects and self.determiners) and not self.phrases:
            raise VocabularyError(f"{self.source}: the vocabulary defines no command: give "
                                  "`objects` (with `determiners`) or `phrases`")

    def words(self) -> set[str]:
        """Every word the grammar can produce."""
        return {w for body in grammar_rules(self).values() for w in _TOKEN.findall(body)
                if not w.startswith("<") and w not in "[]()|"}


def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """Read a vocabulary YAML (None: the packaged ``config/speech_vocabulary.yaml``).

    Raises:
      VocabularyError: missing/empty file, YAML syntax error, unknown keys, bad entries.
    """
    p = Path(path) if path else default_vocabulary_path()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise VocabularyError(f"cannot read vocabulary file {str(p)!r}: {err.strerror}; pass an "
                              "existing YAML (see config/speech_vocabulary.yaml)") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise VocabularyError(f"vocabulary file {str(p)!r} is not valid YAML: {err}") from err
    if not data:
        raise VocabularyError(f"vocabulary file {str(p)!r} is empty; it needs at least "
                              "`objects:` or `phrases:` (copy config/speech_vocabulary.yaml)")
    if not isinstance(data, dict):
        raise VocabularyError(f"vocabulary file {str(p)!r} must be a mapping of lists, got "
                              f"{type(data).__name__}")
    known = {f.name for f in fields(Vocabulary)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise VocabularyError(f"vocabulary file {str(p)!r}: unknown keys {unknown}; use "
                              f"{sorted(known)}")
    return Vocabulary(**{k: (v if v is not None else []) for k, v in data.items()},
                      source=str(p))


def default_vocabulary_path() -> Path:
    """``config/speech_vocabulary.yaml`` of the source tree, or of the installed share dir."""
    here = Path(__file__).resolve().parents[2] / "config" / "speech_vocabulary.yaml"
    if here.exists():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory("lens_ros")) / "config" / "speech_vocabulary.yaml"
    except (ImportError, LookupError, OSError, ValueError):
        return here


#: grammar rule name -> Vocabulary list it is made of
_SLOTS = (("verb", "verbs"), ("determiner", "determiners"), ("ordinal", "ordinals"),
          ("superlative", "superlatives"), ("size", "sizes"), ("colour", "colours"),
          ("texture", "textures"), ("object", "objects"), ("side", "sides"),
          ("relation", "relations"), ("analogy", "analogies"), ("affordance", "affordances"),
          ("phrase", "phrases"))


def _alt(items: list[str]) -> str:
    return " | ".join(items)


def grammar_rules(v: Vocabulary) -> dict[str, str]:
    """Rule name -> JSGF rule body; "command" is the public rule. Empty lists drop their slot."""
    rules: dict[str, str] = {}
    for name, attr in _SLOTS:
        items = getattr(v, attr)
        if items:
            rules[name] = _alt(items)
    targets = []
    if "object" in rules and "determiner" in rules:
        opt = " ".join(f"[<{r}>]" for r in ("ordinal", "superlative", "size", "colour",
                                             "texture") if r in rules)
        rules["np"] = " ".join(x for x in ("<determiner>", opt, "<object>",
                                           "[<side>]" if "side" in rules else "") if x)
        tails = (["<relation> <np>"] if "relation" in rules else []) + \
                (["colored like <analogy>"] if "analogy" in rules else [])
        targets.append("<np>" + (f" [{_alt(tails)}]" if tails else ""))
    if "affordance" in rules:
        colour = "[<colour>] " if "colour" in rules else ""
        targets.append(f"something {colour}<affordance>")
    if targets:
        rules["target"] = _alt(targets)
    head = ["[<verb>] <target>" if "verb" in rules else "<target>"] if targets else []
    answers = v.confirm_words + v.cancel_words
    if answers:
        rules["answer"] = _alt(answers)
    rules["command"] = _alt(head + (["<phrase>"] if "phrase" in rules else []) +
                            (["<answer>"] if answers else []))
    return rules


def build_jsgf(v: Vocabulary, name: str = "lens_commands") -> str:
    """The JSGF V1.0 grammar text of the vocabulary (public rule ``<command>``)."""
    rules = grammar_rules(v)
    lines = ["#JSGF V1.0;", f"grammar {name};", f"public <command> = {rules['command']};"]
    lines += [f"<{r}> = {body};" for r, body in rules.items() if r != "command"]
    return "\n".join(lines) + "\n"


def normalize_text(text: str) -> str:
    """Lower case, punctuation (except apostrophes) to spaces, single spaces: how transcripts
    and vocabulary entries are compared ("The red mug, please." -> "the red mug please")."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", str(text).lower()).split())


class CommandMatcher:
    """Tells whether a text is a sentence of the grammar (after :func:`normalize_text`)."""

    def __init__(self, v: Vocabulary):
        rules = grammar_rules(v)
        self._pattern = re.compile(self._regex(rules["command"], rules))

    def _regex(self, body: str, rules: dict[str, str]) -> str:
        out = []
        for tok in _TOKEN.findall(body):
            if tok.startswith("<"):
                out.append("(?:" + self._regex(rules[tok[1:-1]], rules) + ")")
            else:
                out.append({"[": "(?:", "]": ")?", "(": "(?:", ")": ")", "|": "|"}.get(
                    tok, re.escape(tok) + " "))
        return "(?:" + "".join(out) + ")"

    def matches(self, text: str) -> bool:
        """True when ``text`` (normalised) is in the command language."""
        t = normalize_text(text)
        return bool(t) and self._pattern.fullmatch(t + " ") is not None


def resolve_pronunciations(v: Vocabulary, lookup: Callable[[str], str | None]) -> dict[str, str]:
    """Pronunciations to add to the recogniser's dictionary.

    Arguments:
      v (Vocabulary): its ``pronunciations`` win over the dictionary.
      lookup: word -> CMU phones or None (e.g. ``pocketsphinx.Decoder.lookup_word``).
    Returns:
      dict word -> phones for every word that is not in the dictionary as is: the vocabulary's
      own entries, and compounds of two dictionary words ("leftmost" -> "L EH F T M OW S T").
    Raises:
      VocabularyError: naming every word with no pronunciation and the fix.
    """
    out = dict(v.pronunciations)
    missing = []
    for word in sorted(v.words()):
        if word in out or lookup(word):
            continue
        for i in range(len(word) - 2, 1, -1):  # longest known first part first
            a, b = lookup(word[:i]), lookup(word[i:])
            if a and b:
                out[word] = f"{a} {b}"
                break
        else:
            missing.append(word)
    if missing:
        raise VocabularyError(f"{v.source}: no pronunciation for {missing}; add them under "
                              "`pronunciations:` as CMU phones (e.g. 'selfie: S EH L F IY') or "
                              "replace them with dictionary words")
    return out
