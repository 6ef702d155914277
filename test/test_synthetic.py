"""Synthetic scenes: determinism, exact masks, unique referents (checked by an independent
interpreter of the commands), levels, vocabulary, splits, training items and moving sequences."""
import re

import numpy as np
import pytest

from lens_ros.geometry import mask_to_box
from lens_ros.synthetic import (LEVELS, LIST_COMMAND, SPLITS, VOCABULARY, SceneConfig,
                                make_scene, make_sequence, make_split_scene, scene_seed)
from lens_ros.synthetic.dataset import SyntheticReferDataset
from lens_ros.synthetic.render import render
from lens_ros.synthetic.vocabulary import AFFORDANCES, COLOUR_ANALOGIES, COLOURS
from lens_ros.data.items import TrainItem


def _scene_arrays_equal(a, b):
    assert np.array_equal(a.rgb, b.rgb)
    assert np.array_equal(a.depth, b.depth, equal_nan=True)
    assert np.array_equal(a.labels, b.labels)
    assert [o.name for o in a.objects] == [o.name for o in b.objects]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects))
    assert [(e.text, e.target, e.reasoning) for e in a.expressions] == \
        [(e.text, e.target, e.reasoning) for e in b.expressions]


@pytest.mark.parametrize("level", [None, *LEVELS])
def test_same_seed_gives_identical_scene(level):
    a = make_scene(np.random.default_rng(7), level, n_expressions=2)
    b = make_scene(np.random.default_rng(7), level, n_expressions=2)
    _scene_arrays_equal(a, b)
    c = make_scene(np.random.default_rng(8), level, n_expressions=2)
    assert not np.array_equal(a.rgb, c.rgb)


def test_scene_arrays_have_documented_types():
    cfg = SceneConfig(width=96, height=64)
    scene = make_scene(np.random.default_rng(1), config=cfg)
    assert scene.rgb.shape == (64, 96, 3) and scene.rgb.dtype == np.uint8
    assert scene.depth.shape == (64, 96) and scene.depth.dtype == np.float32
    valid = scene.depth[np.isfinite(scene.depth)]
    assert valid.size > 0.9 * scene.depth.size and (valid > 0.2).all() and (valid < 5).all()
    k = scene.intrinsics
    assert (k.width, k.height) == (96, 64) and k.fx > 0 and k.fy > 0


@pytest.fixture(scope="module")
def scenes():
    # 80 scenes, 2 commands each, every level 20 times: enough to hit every command kind
    return [make_scene(np.random.default_rng(100 + s), LEVELS[s % 4], n_expressions=2)
            for s in range(80)]


def test_masks_are_exact_visible_parts_and_boxes_match(scenes):
    for scene in scenes[:20]:
        full = [render(scene.view, [o.spec]).labels == 0 for o in scene.objects]  # unoccluded
        visible = np.zeros(scene.labels.shape, bool)
        for i, obj in enumerate(scene.objects):
            assert np.array_equal(obj.mask, scene.labels == i)
            assert obj.mask.any() and not (obj.mask & visible).any()  # disjoint
            visible |= obj.mask
            assert obj.box == mask_to_box(obj.mask)
            assert (obj.mask <= full[i]).all()  # visible part of the object's own silhouette
            hidden = full[i] & ~obj.mask  # every hidden pixel is covered by another object
            assert (scene.labels[hidden] >= 0).all() and (scene.labels[hidden] != i).all()
            assert obj.mask.sum() >= 0.6 * full[i].sum()  # partial occlusion only
        for e in scene.expressions:
            assert e.box == scene.objects[e.target].box == mask_to_box(e.mask)
            assert np.array_equal(e.mask, scene.objects[e.target].mask)


def test_occlusion_happens(scenes):
    occluded = [o for s in scenes for o in s.objects if o.visible_fraction < 0.99]
    assert len(occluded) >= 10


# --- an interpreter of the generated commands, written independently of the generator -----------

_NP = r"(?:(small|large) )?(?:(%s) )?(?:(striped|dotted) )?(\w+)" % "|".join(COLOURS)


def _np(objs, m, offset=0):
    size, colour, texture, noun = m.group(offset + 1, offset + 2, offset + 3, offset + 4)
    return [i for i, o in enumerate(objs)
            if (size is None or o.spec.size == size)
            and (colour is None or o.spec.colour == colour)
            and (texture is None or o.spec.texture == texture)
            and (noun == "object" or o.spec.shape == noun)]


def _unique(ids):
    assert len(ids) == 1, f"anchor phrase matches {len(ids)} objects"
    return ids[0]


def _extreme(objs, ids, key, largest, rank=0):
    values = sorted(((key(objs[i]), i) for i in ids), reverse=largest)
    assert values[rank][0] != values[rank + 1 if rank + 1 < len(values) else rank - 1][0]
    return [values[rank][1]]


def interpret(objs, text):
    """The objects a command refers to, under strict (margin-free) semantics."""
    u, z = (lambda o: o.pixel[0]), (lambda o: o.base[2])
    for phrase, shapes, _ in AFFORDANCES:
        pat = "^" + re.escape(phrase).replace("something", r"something(?: (\w+))?", 1) + "$"
        m = re.match(pat, text)
        if m:
            colour = m.group(1) if "something" in phrase else None
            return [i for i, o in enumerate(objs) if o.spec.shape in shapes
                    and (colour is None or o.spec.colour == colour)]
    m = re.match(r"^the (\w+) colored like (.+)$", text)
    if m:
        colour = dict(COLOUR_ANALOGIES)[m.group(2)]
        return [i for i, o in enumerate(objs) if o.spec.colour == colour
                and m.group(1) in ("object", o.spec.shape)]
    m = re.match(rf"^the {_NP} (left of|right of|in front of|behind) the {_NP}$", text)
    if m:
        a = objs[_unique(_np(objs, m, 5))]
        test = {"left of": lambda o: u(o) < u(a), "right of": lambda o: u(o) > u(a),
                "in front of": lambda o: z(o) < z(a), "behind": lambda o: z(o) > z(a)}[m.group(5)]
        return [i for i in _np(objs, m) if objs[i] is not a and test(objs[i])]
    m = re.match(rf"^the {_NP} (closest to|farthest from) the {_NP}$", text)
    if m:
        a = objs[_unique(_np(objs, m, 5))]
        ids = [i for i in _np(objs, m) if objs[i] is not a]
        return _extreme(objs, ids, lambda o: np.hypot(o.spec.x - a.spec.x, o.spec.y - a.spec.y),
                        m.group(5) == "farthest from")
    m = re.match(rf"^the second {_NP} from the (left|right)$", text)
    if m:
        return _extreme(objs, _np(objs, m), u, m.group(5) == "right", rank=1)
    m = re.match(rf"^the (second )?(largest|smallest|leftmost|rightmost|nearest|farthest) {_NP}$",
                 text)
    if m:
        key = {"largest": (lambda o: o.spec.radius, True), "smallest": (lambda o: o.spec.radius,
               False), "leftmost": (u, False), "rightmost": (u, True), "nearest": (z, False),
               "farthest": (z, True)}[m.group(2)]
        return _extreme(objs, _np(objs, m, 2), *key, rank=1 if m.group(1) else 0)
    m = re.match(rf"^the {_NP}$", text)
    assert m, f"command {text!r} has no known form"
    return _np(objs, m)


def test_every_command_refers_to_exactly_its_target(scenes):
    n = 0
    for scene in scenes:
        for e in scene.expressions:
            assert interpret(scene.objects, e.text) == [e.target], (e.level, e.text)
            n += 1
    assert n == 160


def test_every_level_produces_valid_commands(scenes):
    kinds = {}
    for scene in scenes:
        names = [o.name for o in scene.objects]
        assert len(set(names)) == len(names)  # canonical names are unique
        for e in scene.expressions:
            kinds.setdefault(e.level, set()).add(e.kind)
            words = e.text.split() + e.reasoning.split()
            assert e.text == e.text.lower().strip() and set(words) <= set(VOCABULARY), e.text
            assert e.reasoning.endswith(f"is the {e.target_name}")
            x1, y1, x2, y2 = e.box
            assert 0 <= x1 < x2 <= scene.rgb.shape[1] and 0 <= y1 < y2 <= scene.rgb.shape[0]
        assert len({e.text for e in scene.expressions}) == len(scene.expressions)
    assert set(kinds) == set(LEVELS)
    assert {"size", "position", "closest"} <= kinds["ordinal"]
    assert {"affordance", "analogy"} <= kinds["indirect"]
    assert "needed" in kinds["spatial"]  # the relation is what disambiguates


def test_vocabulary_is_small_sorted_and_lower_case():
    assert len(VOCABULARY) <= 120 and list(VOCABULARY) == sorted(set(VOCABULARY))
    assert all(w.isalpha() and w == w.lower() for w in VOCABULARY)
    assert set(LIST_COMMAND.split()) <= set(VOCABULARY)


def test_easy_pool_and_bad_configs():
    easy = SceneConfig(min_objects=1, max_objects=3)
    for s in range(12):
        scene = make_scene(np.random.default_rng(s), LEVELS[s % 4], easy)
        assert 1 <= len(scene.objects) <= 3
    with pytest.raises(ValueError, match="max_objects"):
        SceneConfig(min_objects=4, max_objects=2)
    with pytest.raises(ValueError, match="shapes"):
        SceneConfig(shapes=("teapot",))
    with pytest.raises(ValueError, match="unknown level"):
        make_scene(np.random.default_rng(0), "poetic")


def test_split_seed_ranges_are_disjoint_and_test_is_held_out():
    names = sorted(SPLITS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = SPLITS[a], SPLITS[b]
            assert ra.stop <= rb.start or rb.stop <= ra.start, (a, b)
    assert 200 <= len(SPLITS["test"]) <= 1000 and len(SPLITS["train"]) >= 10**6
    assert scene_seed("test", 0) == SPLITS["test"].start
    with pytest.raises(ValueError, match="outside split"):
        scene_seed("test", len(SPLITS["test"]))
    levels = [make_split_scene("test", i).expressions[0].level for i in range(8)]
    assert levels == list(LEVELS) * 2  # balanced


def test_dataset_yields_training_items():
    ds = SyntheticReferDataset("val", size=12, dense_fraction=0.25)
    items = list(ds)
    assert len(items) == 12 and all(isinstance(it, TrainItem) for it in items)
    dense = [ds.record(i) for i in range(12) if ds.is_dense(i)]
    assert dense and all(r["question"] == LIST_COMMAND and len(r["objects"]) >= 2 for r in dense)
    for i, it in enumerate(items):
        r = ds.record(i)
        assert it.gt_mask.shape == it.image.shape[:2] and it.gt_mask.any()
        assert it.gt_box == tuple(float(v) for v in mask_to_box(it.gt_mask))
        assert it.source == f"synthetic/{r['level']}" and it.question == r["question"]
    assert np.array_equal(ds[3].image, SyntheticReferDataset("val", size=12)[3].image)


def test_sequence_moves_target_smoothly_with_per_frame_truth():
    cfg = SceneConfig(width=128, height=96)
    seq = make_sequence(np.random.default_rng(3), 24, cfg, n_moving_distractors=1)
    again = make_sequence(np.random.default_rng(3), 24, cfg, n_moving_distractors=1)
    assert np.array_equal(seq.frames[-1].rgb, again.frames[-1].rgb)
    assert len(seq.frames) == 24 and seq.moving[0] == seq.target and len(seq.moving) == 2
    centres = np.array([f.objects[seq.target].centre for f in seq.frames])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.max() < 0.015 and np.linalg.norm(centres[-1] - centres[0]) > 0.02
    for f, mask, box in zip(seq.frames, seq.masks, seq.boxes):
        assert mask.any() and box == mask_to_box(mask)
        e = f.expressions[0]
        assert e.text == seq.command and np.array_equal(e.mask, mask)
        assert interpret(f.objects, seq.command) == [seq.target]
    still = [i for i in range(len(seq.frames[0].objects)) if i not in seq.moving]
    for i in still:  # objects that do not move keep their place
        assert seq.frames[0].objects[i].spec == seq.frames[-1].objects[i].spec
