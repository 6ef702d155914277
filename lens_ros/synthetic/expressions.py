"""Referring expressions at four levels, each checked to pick out exactly one object.

Every generator enumerates the commands that are *true and unique* in a scene (with margins: a
relation or order that holds only by a few pixels or millimetres is neither used nor allowed to
confuse a candidate) and returns them as :class:`Candidate` s; ``scene.py`` picks one with the
scene's generator. Objects are duck-typed: ``.spec`` (an ``ObjectSpec``), ``.pixel`` (u, v of the
centre), ``.centre`` (camera-frame x, y, z), ``.base`` and ``.base_pixel`` (the footprint
centre on the table, camera frame and pixels).

Levels:
  attribute  "the red cube", "the small striped object" (a minimal unique description)
  spatial    "the ball left of the green mug", "the cup behind the large cube"
  ordinal    "the second largest cylinder", "the leftmost red object",
             "the object closest to the blue cube"
  indirect   "something you could drink from", "the ball colored like the sky"
The reasoning text resolves the command into the target's canonical "size colour shape" name.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from lens_ros.synthetic.vocabulary import (AFFORDANCES, COLOUR_ANALOGIES, NUMBER_WORDS, PLURALS,
                                           RELATIONS)

#: the difficulty levels, easiest first
LEVELS = ("attribute", "spatial", "ordinal", "indirect")

_ATTR_KEYS = ("size", "colour", "texture", "shape")
POSITION_MARGIN = 0.06  #: left/right decisions need this fraction of the image width
DEPTH_MARGIN = 0.04  #: front/behind decisions need this many metres of camera depth
SIZE_MARGIN = 1.12  #: size orders need this radius ratio between neighbours
DISTANCE_RATIO = 0.75  #: "closest": best distance <= this x the runner-up (image and table)


@dataclass(frozen=True)
class Candidate:
    """A command that is true for exactly one object: ``target`` indexes the scene's objects."""

    text: str
    target: int
    level: str
    kind: str
    reasoning: str


def describe(attrs: dict) -> str:
    """Noun phrase without article: {"colour": "red", "shape": "cube"} -> "red cube"."""
    words = [attrs[k] for k in ("size", "colour", "texture") if k in attrs]
    return " ".join(words + [attrs.get("shape", "object")])


def _plural(attrs: dict) -> str:
    words = describe(attrs).split()
    return " ".join(words[:-1] + [PLURALS[words[-1]]])


def _matches(obj, attrs: dict) -> bool:
    return all(getattr(obj.spec, k) == v for k, v in attrs.items())


def _subsets(obj, with_empty: bool = False) -> list[dict]:
    keys = [k for k in _ATTR_KEYS if not (k == "texture" and obj.spec.texture == "plain")]
    out = [{}] if with_empty else []
    for n in range(1, len(keys) + 1):
        out += [{k: getattr(obj.spec, k) for k in c} for c in combinations(keys, n)]
    return out


def unique_descriptions(objects, i: int) -> tuple[list[dict], list[dict]]:
    """(minimal, redundant) attribute descriptions that match object ``i`` only."""
    unique = [s for s in _subsets(objects[i])
              if sum(_matches(o, s) for o in objects) == 1]
    minimal = [s for s in unique if not any(t.items() < s.items() for t in unique)]
    return minimal, [s for s in unique if s not in minimal]


def attribute_candidates(objects) -> list[Candidate]:
    """Minimal (kind "minimal") and over-specified (kind "redundant") unique descriptions."""
    out = []
    for i, obj in enumerate(objects):
        minimal, redundant = unique_descriptions(objects, i)
        for kind, descs in (("minimal", minimal), ("redundant", redundant)):
            out += [Candidate(f"the {describe(s)}", i, "attribute", kind,
                              f"only one {describe(s)} is here and it is the {obj.spec.name}")
                    for s in descs]
    return out


def _relation(t, a, rel: str, width: int) -> bool | None:
    """Whether object t stands ``rel`` object a: True, False, or None when too close to call."""
    if rel in ("left of", "right of"):
        m = POSITION_MARGIN * width
        delta = (a.pixel[0] - t.pixel[0]) if rel == "left of" else (t.pixel[0] - a.pixel[0])
    else:
        m = DEPTH_MARGIN
        delta = a.base[2] - t.base[2] if rel == "in front of" else t.base[2] - a.base[2]
        dv = t.base_pixel[1] - a.base_pixel[1]  # nearer objects stand lower in the image
        if delta >= m and (dv if rel == "in front of" else -dv) <= 0:
            return None
    if delta >= m:
        return True
    return None if delta > 0 else False


def _anchor_phrases(objects, a: int) -> list[str]:
    minimal, _ = unique_descriptions(objects, a)
    return [describe(s) for s in minimal]


def spatial_candidates(objects, width: int) -> list[Candidate]:
    """"the <target> <relation> the <anchor>"; kind "needed" when the target phrase alone is
    ambiguous (the relation is what disambiguates), else "plain"."""
    out = []
    for a, anchor in enumerate(objects):
        phrases = _anchor_phrases(objects, a)
        for t, target in enumerate(objects):
            if t == a:
                continue
            for rel in RELATIONS:
                if _relation(target, anchor, rel, width) is not True:
                    continue
                for d in _subsets(target, with_empty=True):
                    if len(d) > 2:
                        continue
                    pool = [c for c in range(len(objects)) if c != a and _matches(objects[c], d)]
                    states = [_relation(objects[c], anchor, rel, width) for c in pool]
                    if None in states or sum(bool(s) for s in states) != 1:
                        continue
                    kind = "needed" if len(pool) >= 2 else "plain"
                    for ph in phrases:
                        out.append(Candidate(
                            f"the {describe(d)} {rel} the {ph}", t, "spatial", kind,
                            f"the {anchor.spec.name} is the anchor and the only {describe(d)} "
                            f"{rel} it is the {target.spec.name}"))
    return out


def _groups(objects) -> list[tuple[dict, list[int]]]:
    """Object groups ordinal commands talk about: all objects, each shape, each colour."""
    groups = [({}, list(range(len(objects))))]
    for key in ("shape", "colour"):
        for value in sorted({getattr(o.spec, key) for o in objects}):
            groups.append(({key: value}, [i for i, o in enumerate(objects)
                                          if getattr(o.spec, key) == value]))
    return [(g, idx) for g, idx in groups if len(idx) >= 2]


def _ranked(values: np.ndarray, margin: float, ratio: bool) -> list[int]:
    """Ranks (in ascending order of ``values``) whose neighbours are separated by the margin."""
    order = np.sort(values)
    gap = order[1:] / np.maximum(order[:-1], 1e-9) if ratio else np.diff(order)
    ok = gap >= margin
    return [r for r in range(len(order))
            if (r == 0 or ok[r - 1]) and (r == len(order) - 1 or ok[r])]


def _rank_candidates(objects, group, idx, values, margin, ratio, words, kind, second=False):
    """Order commands over one group, ``words`` = (word for the lowest value, for the highest):
    "the smallest cube", "the second largest cube", "the second ball from the left"."""
    n = len(idx)
    order = [idx[j] for j in np.argsort(values, kind="stable")]
    good = set(_ranked(np.asarray(values, float), margin, ratio))
    low, high = words
    picks = [] if low.startswith("from ") else [(0, low), (n - 1, high)]
    if n >= 3 and second:
        picks += [(1, f"second {low}"), (n - 2, f"second {high}")]
    noun, plural = describe(group), _plural(group)
    count = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    out = []
    for r, said in picks:
        if r not in good:
            continue
        head, _, tail = said.partition(" from ")
        text = f"the {head} {noun} from {tail}" if tail else f"the {said} {noun}"
        out.append(Candidate(text, order[r], "ordinal", kind,
                             f"there are {count} {plural} and the {said} is the "
                             f"{objects[order[r]].spec.name}"))
    return out


def ordinal_candidates(objects, width: int) -> list[Candidate]:
    """Size orders within a shape, position orders within any group, and "closest to"."""
    out = []
    for group, idx in _groups(objects):
        sub = [objects[i] for i in idx]
        if "shape" in group:
            radius = [o.spec.radius for o in sub]
            apparent = [o.spec.radius / o.centre[2] for o in sub]
            if np.array_equal(np.argsort(radius), np.argsort(apparent)):
                out += _rank_candidates(objects, group, idx, radius, SIZE_MARGIN, True,
                                        ("smallest", "largest"), "size", second=True)
        out += _rank_candidates(objects, group, idx, [o.pixel[0] for o in sub],
                                POSITION_MARGIN * width, False, ("leftmost", "rightmost"),
                                "position")
        out += _rank_candidates(objects, group, idx, [o.pixel[0] for o in sub],
                                POSITION_MARGIN * width, False,
                                ("from the left", "from the right"), "position", second=True)
        depth = [o.base[2] for o in sub]
        if np.array_equal(np.argsort(depth), np.argsort([-o.base_pixel[1] for o in sub])):
            out += _rank_candidates(objects, group, idx, depth, DEPTH_MARGIN, False,
                                    ("nearest", "farthest"), "depth")
    out += _closest_candidates(objects)
    return out


def _closest_candidates(objects) -> list[Candidate]:
    out = []
    for a, anchor in enumerate(objects):
        phrases = _anchor_phrases(objects, a)
        nouns = [{}] + [{"shape": s} for s in sorted({o.spec.shape for o in objects})]
        for noun in nouns:
            pool = [c for c in range(len(objects)) if c != a and _matches(objects[c], noun)]
            if len(pool) < 2:
                continue
            table = [np.hypot(objects[c].spec.x - anchor.spec.x, objects[c].spec.y - anchor.spec.y)
                     for c in pool]
            image = [np.hypot(*(np.subtract(objects[c].pixel, anchor.pixel))) for c in pool]
            o_t, o_i = np.argsort(table), np.argsort(image)
            for word, pick, near in (("closest to", 0, True), ("farthest from", -1, False)):
                if o_t[pick] != o_i[pick]:
                    continue
                best = [table[o_t[pick]], image[o_i[pick]]]
                other = [table[o_t[1 if near else -2]], image[o_i[1 if near else -2]]]
                ok = all((b <= DISTANCE_RATIO * s) if near else (s <= DISTANCE_RATIO * b)
                         for b, s in zip(best, other))
                if not ok:
                    continue
                target = objects[pool[o_t[pick]]]
                for ph in phrases:
                    out.append(Candidate(
                        f"the {describe(noun)} {word} the {ph}", pool[o_t[pick]], "ordinal",
                        "closest" if near else "farthest",
                        f"the {anchor.spec.name} is the anchor and the {describe(noun)} {word} "
                        f"it is the {target.spec.name}"))
    return out


def indirect_candidates(objects) -> list[Candidate]:
    """Affordances ("something you could drink from") and colour analogies ("colored like the
    sky"), optionally narrowed by a colour or a shape when the phrase alone is ambiguous."""
    out = []
    for phrase, shapes, premise in AFFORDANCES:
        pool = [i for i, o in enumerate(objects) if o.spec.shape in shapes]
        if len(pool) == 1:
            out.append(Candidate(phrase, pool[0], "indirect", "affordance",
                                 f"{premise} and the only one here is the "
                                 f"{objects[pool[0]].spec.name}"))
        elif len(pool) >= 2 and phrase.startswith("something you could"):
            for colour in sorted({objects[i].spec.colour for i in pool}):
                sub = [i for i in pool if objects[i].spec.colour == colour]
                if len(sub) == 1:
                    out.append(Candidate(
                        phrase.replace("something", f"something {colour}", 1), sub[0],
                        "indirect", "affordance_colour",
                        f"{premise} and the only {colour} one here is the "
                        f"{objects[sub[0]].spec.name}"))
    for thing, colour in COLOUR_ANALOGIES:
        pool = [i for i, o in enumerate(objects) if o.spec.colour == colour]
        if len(pool) == 1:
            out.append(Candidate(f"the object colored like {thing}", pool[0], "indirect",
                                 "analogy", f"{thing} is {colour} and the only {colour} object "
                                 f"here is the {objects[pool[0]].spec.name}"))
        elif len(pool) >= 2:
            for shape in sorted({objects[i].spec.shape for i in pool}):
                sub = [i for i in pool if objects[i].spec.shape == shape]
                if len(sub) == 1:
                    out.append(Candidate(
                        f"the {shape} colored like {thing}", sub[0], "indirect",
                        "analogy_shape", f"{thing} is {colour} and the only {colour} {shape} "
                        f"here is the {objects[sub[0]].spec.name}"))
    return out


def candidates(objects, level: str, width: int) -> list[Candidate]:
    """Every valid command of ``level`` for the scene's objects (possibly none)."""
    if level == "attribute":
        return attribute_candidates(objects)
    if level == "spatial":
        return spatial_candidates(objects, width)
    if level == "ordinal":
        return ordinal_candidates(objects, width)
    if level == "indirect":
        return indirect_candidates(objects)
    raise ValueError(f"unknown level {level!r}; use one of {LEVELS}")


#: preferred candidate kinds per level (picked first when the scene has them)
PREFERRED = {"attribute": ("minimal",), "spatial": ("needed",),
             "ordinal": ("size", "position", "depth", "closest", "farthest"),
             "indirect": ("affordance", "affordance_colour", "analogy", "analogy_shape")}


#: relative weight of a kind when drawing one (default 1): size orders are rarely possible
KIND_WEIGHTS = {"size": 3.0}


def pick(rng: np.random.Generator, cands: list[Candidate], level: str,
         exclude: set[str] = frozenset()) -> Candidate | None:
    """Choose one candidate: a kind first (uniformly, times ``KIND_WEIGHTS``, so rare kinds are
    not swamped by frequent ones; ``PREFERRED`` kinds 80 % of the time), then a candidate of
    that kind; texts in ``exclude`` are skipped. None when nothing is left."""
    cands = [c for c in cands if c.text not in exclude]
    if not cands:
        return None
    kinds = sorted({c.kind for c in cands})
    preferred = [k for k in kinds if k in PREFERRED[level]]
    if preferred and (rng.random() < 0.8 or len(preferred) == len(kinds)):
        kinds = preferred
    weights = np.array([KIND_WEIGHTS.get(k, 1.0) for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    pool = [c for c in cands if c.kind == kind]
    return pool[int(rng.integers(len(pool)))]


def list_objects(objects) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Every object's (canonical name, box), left to right by box centre ("list the objects")."""
    items = [(o.spec.name, o.box) for o in objects]
    return sorted(items, key=lambda it: (it[1][0] + it[1][2], it[1][1]))
