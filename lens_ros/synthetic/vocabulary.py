"""The closed world of the synthetic scenes: shapes, colours, sizes, textures, affordances, and the
word list every generated command and reasoning text is drawn from (lower-case, no punctuation).

The demo model uses a word-level tokenizer, so :data:`VOCABULARY` is part of its contract: a test
checks that every generated text is made of these words only.
"""
from __future__ import annotations

#: object shapes; each is rendered from a few ray-cast primitives (see ``render.py``)
SHAPES = ("cube", "ball", "cylinder", "cone", "mug", "cup", "bottle", "bowl", "book")
#: plural forms used in reasoning texts ("there are three cubes ...")
PLURALS = {s: s + "s" for s in SHAPES} | {"object": "objects"}

#: colour name -> base RGB (0..1); lighting and noise change the rendered values
COLOURS = {
    "red": (0.82, 0.12, 0.10),
    "green": (0.16, 0.62, 0.18),
    "blue": (0.12, 0.30, 0.85),
    "yellow": (0.95, 0.82, 0.10),
    "purple": (0.52, 0.20, 0.68),
    "orange": (0.97, 0.50, 0.08),
}

#: size name -> range of the object's base radius in metres (a gap keeps the classes apart)
SIZES = {"small": (0.025, 0.030), "large": (0.041, 0.048)}

#: surface patterns; "plain" is never said in commands
TEXTURES = ("plain", "striped", "dotted")

#: open containers: their top is rendered as a dark opening
OPEN_TOP = frozenset({"mug", "cup", "bowl"})

#: indirect (reasoning) phrases: (command, the shapes it refers to, reasoning premise)
AFFORDANCES = (
    ("something you could drink from", ("mug", "cup", "bottle"),
     "people drink from mugs cups and bottles"),
    ("something you could roll", ("ball",), "a ball can roll"),
    ("something you could read", ("book",), "a book can be read"),
    ("something you could eat soup from", ("bowl",), "soup is eaten from a bowl"),
    ("something pointy", ("cone",), "a cone has a point"),
    ("something you could pour water from", ("bottle",), "water is poured from a bottle"),
    ("something you could build a tower with", ("cube",), "cubes stack into a tower"),
    ("something with a handle", ("mug",), "a mug has a handle"),
    ("the party hat", ("cone",), "a party hat looks like a cone"),
    ("the can", ("cylinder",), "a can is a cylinder"),
)

#: colour analogies: (thing, its colour, article-noun phrase used in the premise)
COLOUR_ANALOGIES = (
    ("a tomato", "red"), ("grass", "green"), ("the sky", "blue"),
    ("a banana", "yellow"), ("a grape", "purple"), ("an orange", "orange"),
)

#: spatial relations between two objects (image left/right, camera front/behind)
RELATIONS = ("left of", "right of", "in front of", "behind")
#: superlatives over an object group
ORDINAL_WORDS = ("largest", "smallest", "leftmost", "rightmost", "nearest", "farthest")
#: object counts said in reasoning texts, indexed by the count (groups have >= 2 objects)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
RANK_WORDS = ("second",)

#: the command of the dense "list the objects" training samples
LIST_COMMAND = "list the objects"

_TEMPLATE_WORDS = """
the a an it is are and only one here there anchor object objects of from to with
you could can be something people colored like looks list closest
"""


def _words() -> tuple[str, ...]:
    words: set[str] = set(_TEMPLATE_WORDS.split())
    words |= set(SHAPES) | set(PLURALS.values()) | set(COLOURS) | set(SIZES)
    words |= set(TEXTURES) - {"plain"}
    for phrase, _, premise in AFFORDANCES:
        words |= set(phrase.split()) | set(premise.split())
    for thing, colour in COLOUR_ANALOGIES:
        words |= set(thing.split()) | {colour}
    for text in RELATIONS + ORDINAL_WORDS + NUMBER_WORDS[2:] + RANK_WORDS + (LIST_COMMAND,):
        words |= set(text.split())
    return tuple(sorted(words))


#: every word a generated command or reasoning text can contain (sorted, lower-case)
VOCABULARY: tuple[str, ...] = _words()
