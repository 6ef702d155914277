"""Spoken-command evaluation corpus synthesised with espeak-ng: every English voice and voice
variant installed, several pitches and speeds, split BY VOICE into a tuning set and a held-out
set (fixed seeded split: nothing is tuned on the held-out voices).

Clip kinds:
  command  an in-vocabulary command drawn from the vocabulary's slot lists (seeded)
  oov      a command with one word replaced by a near-miss the vocabulary does not have
           ("the golden ball", "the cube underneath the table"): must not be forwarded
  oog      an out-of-grammar sentence ("please close the door"): must not be forwarded

Generated clips are cached as WAV under ``bench/.cache/speech/`` (git-ignored), keyed by
text, voice, pitch and speed, so a rerun costs only decoding.
"""
from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lens_ros.speech.audio import read_wav, write_wav
from lens_ros.speech.synthesis import synthesize
from lens_ros.speech.vocabulary import Vocabulary

CACHE = Path(__file__).resolve().parent / ".cache" / "speech"
SPLIT_SEED = 7  #: seed of the voice split (changing it changes what "held-out" means)
PITCHES = (30, 50, 70)
#: espeak-ng's own voice-family variants (none, female, male, klatt); the other installed
#: variants are character voices ("croak", "Demonic", "whisper")
STANDARD_VARIANTS = ("", "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6",
                     "m7", "m8", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6")
SPEEDS = (130, 160, 190)
#: near-misses by slot: words users say that the default vocabulary does not contain
OOV_WORDS = {
    "colour": ["golden", "silver", "beige", "violet", "turquoise", "magenta", "navy"],
    "object": ["sofa", "cushion", "blanket", "stapler", "hammer", "teapot", "ladder",
               "drawer", "mirror", "wallet", "remote", "bottle opener"],
    "relation": ["underneath", "across from", "opposite", "along", "past", "around"],
}
OUT_OF_GRAMMAR = [
    "what is the weather like today", "please close the door", "turn off the lights",
    "hello robot how are you", "can you hear me", "stop moving right now",
    "i think it is over there", "thank you very much", "what time is it",
    "go back to the charging station", "open the window please", "that is not what i meant",
    "play some music", "where did you put my keys", "never mind", "let me think about it",
]


@dataclass(frozen=True)
class Clip:
    """One utterance to synthesise. ``slot`` names the replaced slot of an oov clip."""

    text: str
    kind: str
    voice: str
    pitch: int
    speed: int
    slot: str = ""

    @property
    def base(self) -> str:
        return self.voice.split("+")[0]

    def path(self) -> Path:
        key = f"{self.text}|{self.voice}|{self.pitch}|{self.speed}"
        return CACHE / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".wav")

    def audio(self) -> np.ndarray:
        """(N,) int16 at 16 kHz, synthesised once and cached."""
        p = self.path()
        if p.exists():
            return read_wav(p)[0]
        pcm = synthesize(self.text, self.voice, self.speed, 16000, self.pitch)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_wav(p, pcm, 16000)
        return pcm


def _espeak_list(arg: str) -> list[tuple[str, str]]:
    """(language, file) rows of ``espeak-ng --voices=<arg>``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed: apt-get install -y espeak-ng")
    out = subprocess.run([exe, f"--voices={arg}"], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            rows.append((cols[1], cols[4]))
    return rows


def english_voices() -> list[str]:
    """Installed English espeak-ng voices with their own formant data (the mbrola ones need
    the separate mbrola program and are skipped)."""
    return sorted({lang for lang, f in _espeak_list("en")
                   if not f.startswith(("mb/", "!v/"))})


def voice_variants() -> list[str]:
    """Installed voice variants ("f1", "klatt2", ...) plus "" for the voice itself."""
    return [""] + sorted({Path(f).name for _lang, f in _espeak_list("variant")})


def split_voices(voices: list[str], variants: list[str], seed: int = SPLIT_SEED
                 ) -> dict[str, list[str]]:
    """{"tuning": [...], "heldout": [...]} of "voice+variant" names: the base voices and the
    variants are each halved at random (seeded), and a held-out voice has a held-out base AND
    a held-out variant, so no held-out clip shares either with a tuning clip."""
    rng = random.Random(seed)
    bases, vars_ = sorted(voices), sorted(variants)
    rng.shuffle(bases)
    rng.shuffle(vars_)
    hb, hv = set(bases[: len(bases) // 2]), set(vars_[: len(vars_) // 2])
    out: dict[str, list[str]] = {"tuning": [], "heldout": []}
    for b in sorted(voices):
        for v in sorted(variants):
            name = b + (f"+{v}" if v else "")
            if b in hb and v in hv:
                out["heldout"].append(name)
            elif b not in hb and v not in hv:
                out["tuning"].append(name)
    return out


def _pick(rng: random.Random, items: list[str], p: float) -> list[str]:
    return [rng.choice(items)] if items and rng.random() < p else []


def noun_phrase(v: Vocabulary, rng: random.Random) -> list[tuple[str, str]]:
    """[(word(s), slot)] of one noun phrase: the [size] [colour] [texture] object."""
    words = [("the", "determiner")]
    if v.superlatives and rng.random() < 0.12:
        words += [(w, "ordinal") for w in _pick(rng, v.ordinals, 0.3)]
        words.append((rng.choice(v.superlatives), "superlative"))
    words += [(w, "size") for w in _pick(rng, v.sizes, 0.2)]
    words += [(w, "colour") for w in _pick(rng, v.colours, 0.55)]
    words += [(w, "texture") for w in _pick(rng, v.textures, 0.08)]
    words.append((rng.choice(v.objects), "object"))
    return words


def command_words(v: Vocabulary, rng: random.Random) -> list[tuple[str, str]]:
    """[(word(s), slot)] of one command: [verb] noun phrase [relation noun phrase]."""
    words = [(w, "verb") for w in _pick(rng, v.verbs, 0.3)] + noun_phrase(v, rng)
    if v.relations and rng.random() < 0.45:
        words += [(rng.choice(v.relations), "relation")] + noun_phrase(v, rng)
    return words


def make_texts(v: Vocabulary, n_commands: int, n_oov: int, seed: int
               ) -> list[tuple[str, str, str]]:
    """[(text, kind, slot)]: distinct commands, near-misses (one slot word replaced by an
    OOV word the vocabulary lacks) and the out-of-grammar sentences."""
    rng = random.Random(seed)
    known = v.words()
    oov_words = {s: [w for w in ws if not set(w.split()) <= known]
                 for s, ws in OOV_WORDS.items()}
    cmds, seen = [], set()
    while len(cmds) < n_commands:
        text = " ".join(w for w, _ in command_words(v, rng))
        if text not in seen:
            seen.add(text)
            cmds.append((text, "command", ""))
    oov = []
    while len(oov) < n_oov:
        words = command_words(v, rng)
        slots = [i for i, (_w, s) in enumerate(words) if oov_words.get(s)]
        i = rng.choice(slots)
        slot = words[i][1]
        words[i] = (rng.choice(oov_words[slot]), slot)
        oov.append((" ".join(w for w, _ in words), "oov", slot))
    return cmds + oov + [(t, "oog", "") for t in OUT_OF_GRAMMAR]


def build_corpus(v: Vocabulary, split: str, n_commands: int, n_oov: int, seed: int = 0
                 ) -> list[Clip]:
    """Clips of one split: each text spoken by one voice of the split (seeded draw of voice,
    pitch and speed; every other clip uses a standard variant, the rest a character one)."""
    voices = split_voices(english_voices(), voice_variants())[split]
    standard = [x for x in voices if is_standard(x)]
    character = [x for x in voices if not is_standard(x)] or standard
    rng = random.Random(f"{split}-{seed}")
    return [Clip(text, kind, rng.choice(standard if k % 2 == 0 else character),
                 rng.choice(PITCHES), rng.choice(SPEEDS), slot)
            for k, (text, kind, slot) in enumerate(make_texts(v, n_commands, n_oov, seed))]


def is_standard(voice: str) -> bool:
    """True for a voice with no variant or one of :data:`STANDARD_VARIANTS`."""
    return voice.partition("+")[2] in STANDARD_VARIANTS

