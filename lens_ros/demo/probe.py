"""What a demo checkpoint can read from a scene: its visual tokens, and its own object list.

Two diagnostics behind docs/demo.md's "what limits it" (the error split of
:mod:`~lens_ros.demo.errors` says *that* commands are resolved to the wrong object;
these say *where* the information is lost):

* **token probe** -- linear classifiers, fitted on the merged visual tokens of ``--train`` pool
  scenes and scored on ``--test`` other pool scenes, read the colour, shape and size of the
  object whose box centre the token holds (the labels of the recipe's dense token loss,
  :func:`~lens_ros.demo.samples.aux_targets`). High held-out accuracy means the vision
  tower puts the attribute where the language model can attend to it.
* **listing** -- the model's greedy answer to "list the objects" on val scenes, scored object by
  object at its rank (objects are listed left to right): the canonical name, and the box at
  IoU >= 0.5. This is what the language model actually reads out of those tokens, in text.
* **listing grounding** (``--grounding-scenes N``, models trained with listing thinks,
  ``SFTConfig.listing``) -- for commands on val scenes, splits the think into its object list and
  its resolution: how well the list reads the scene (name and box at rank, and which attribute of
  a well-boxed object's name is wrong), whether the resolution names the target, and whether the
  answer box is copied from the list (and what box accuracy a perfect copy would give).

    python -m lens_ros.demo.probe runs/demo/sft/last [--pool-dir data/demo_pool]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lens_ros.evaluation.metrics import BOX_ACC_THRESHOLD, box_iou
from lens_ros.model.answers import find_boxes, parse_answer
from lens_ros.synthetic.expressions import list_objects
from lens_ros.synthetic.vocabulary import LIST_COMMAND, SHAPES
from lens_ros.demo.pool import ScenePool, load_pool
from lens_ros.demo.errors import named_target
from lens_ros.demo.samples import (COLOUR_NAMES, SIZE_NAMES, aux_targets, parse_listing,
                                            token_grid)

#: attribute -> number of classes, probed at every labelled token
ATTRIBUTES = {"colour": len(COLOUR_NAMES), "shape": len(SHAPES), "size": len(SIZE_NAMES)}


@torch.no_grad()
def visual_tokens(model, processor, images: np.ndarray, batch: int = 64) -> torch.Tensor:
    """Merged visual tokens (the LLM's image tokens) of ``images`` (N, H, W, 3) uint8 RGB.

    Returns:
      (N, G*G, D) float tensor, tokens in the merger's row-major raster order.
    """
    ip = processor.image_processor
    out = []
    for s in range(0, len(images), batch):
        px = ip(images=[Image.fromarray(im) for im in images[s:s + batch]], return_tensors="pt")
        vis = model.model.get_image_features(px["pixel_values"], px["image_grid_thw"],
                                             return_dict=True)
        out.append(torch.stack(list(vis.pooler_output)).float())
    return torch.cat(out)


def linear_probe_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                          y_test: torch.Tensor, n_classes: int, steps: int = 400,
                          lr: float = 1e-2, seed: int = 0) -> tuple[float, float]:
    """Fit a softmax classifier on standardised ``x_train`` (N, D) -> ``y_train`` (N,) int64
    (full-batch Adam, ``steps`` steps); returns (train accuracy, test accuracy)."""
    torch.manual_seed(seed)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    lin = torch.nn.Linear(x_train.shape[1], n_classes)
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    xs = (x_train - mu) / sd
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(lin(xs), y_train).backward()
        opt.step()
    with torch.no_grad():
        acc_train = (lin(xs).argmax(-1) == y_train).float().mean()
        acc_test = (lin((x_test - mu) / sd).argmax(-1) == y_test).float().mean()
    return float(acc_train), float(acc_test)


def token_probe(model, processor, pool: ScenePool, train: range, test: range) -> dict:
    """{attribute: {"train": acc, "test": acc, "n_test": labelled test tokens}} for
    :data:`ATTRIBUTES`, probing the tokens of pool scenes ``train`` and ``test`` (disjoint)."""
    side = int(pool.images.shape[1])
    grid = token_grid(model, side)

    def tokens_and_labels(idx: range):
        x = visual_tokens(model, processor, pool.images[idx.start:idx.stop])
        t = [aux_targets(pool, i, grid, side) for i in idx]
        return x.flatten(0, 1), {k: torch.from_numpy(np.stack([a[k] for a in t])).flatten()
                                 for k in ATTRIBUTES}

    x_tr, y_tr = tokens_and_labels(train)
    x_te, y_te = tokens_and_labels(test)
    out = {}
    for key, n in ATTRIBUTES.items():
        m_tr, m_te = y_tr[key] >= 0, y_te[key] >= 0
        if not m_tr.any() or not m_te.any():
            continue
        acc_tr, acc_te = linear_probe_accuracy(x_tr[m_tr], y_tr[key][m_tr], x_te[m_te],
                                               y_te[key][m_te], n)
        out[key] = {"train": acc_tr, "test": acc_te, "n_test": int(m_te.sum())}
    return out


def score_listing(answer: str, objects: list) -> dict:
    """Score one "list the objects" answer against ``objects`` = [(name, box xyxy)] left to
    right: ``names`` / ``boxes`` = objects whose name / box (IoU >= 0.5) is right at their rank,
    ``named`` = objects whose name the answer lists anywhere (each listed name matches once),
    ``n`` = objects, ``exact`` = the whole name list is right."""
    parsed = parse_answer(answer or "")
    said = [s.strip() for s in parsed.reasoning.split(" and ") if s.strip()]
    said = [s[4:] if s.startswith("the ") else s for s in said]
    boxes = [list(b) for b in find_boxes(parsed.answer)]
    names = sum(k < len(said) and said[k] == name for k, (name, _) in enumerate(objects))
    hits = sum(k < len(boxes) and box_iou(boxes[k], list(box)) >= BOX_ACC_THRESHOLD
               for k, (_, box) in enumerate(objects))
    named = sum((Counter(said) & Counter(name for name, _ in objects)).values())
    return {"names": int(names), "boxes": int(hits), "named": named, "n": len(objects),
            "exact": float(said == [name for name, _ in objects])}


def listing_accuracy(segmenter, scenes) -> dict:
    """Name and box accuracy at rank and name recall in any order (per object) and the
    exact-list rate (per scene) of the
    segmenter's answers to :data:`LIST_COMMAND` on ``scenes`` (synthetic Scene objects)."""
    total = {"names": 0, "boxes": 0, "named": 0, "n": 0, "exact": 0.0}
    for scene in scenes:
        segmenter.set_image(scene.rgb)
        s = score_listing(segmenter.segment(LIST_COMMAND).answer, list_objects(scene.objects))
        for k in total:
            total[k] += s[k]
    n = max(1, total["n"])
    return {"name_at_rank": total["names"] / n, "box_at_rank": total["boxes"] / n,
            "name_anywhere": total["named"] / n,
            "exact_list": total["exact"] / max(1, len(scenes)), "objects": total["n"],
            "scenes": len(scenes)}


def score_listing_grounding(reasoning: str, box, objects: list, target: str) -> dict:
    """One command's listing think (``reasoning``), answer ``box`` (xyxy or None), scene
    ``objects`` = [(name, box)] left to right and the target's name -> counts: ``names`` /
    ``boxes`` right at their rank, per-word hits ``size`` / ``colour`` / ``shape`` over the
    ``boxed`` objects whose listed box is right, ``named`` (the resolution ends on the target),
    ``hit`` (answer box@0.5), ``copied`` (answer box within IoU 0.9 of the listed box of the
    object it names), ``copy_hit`` (that listed box hits the target: a perfect copy's accuracy)."""
    items = parse_listing(reasoning or "")
    listed = dict(items)
    truth = dict(objects)
    out = Counter(objects=len(objects))
    for k, (name, obj_box) in enumerate(objects):
        if k >= len(items):
            break
        out["names"] += items[k][0] == name
        if box_iou(items[k][1], list(obj_box)) >= BOX_ACC_THRESHOLD:
            out["boxes"] += 1
            said, real = items[k][0].split(), name.split()
            if len(said) == len(real) == 3:
                out["boxed"] += 1
                for word, a, b in zip(("size", "colour", "shape"), said, real):
                    out[word] += a == b
    said = named_target((reasoning or "").partition(". ")[2])
    out["named"] = int(said == target)
    out["hit"] = int(box is not None and box_iou(list(box), list(truth[target]))
                     >= BOX_ACC_THRESHOLD)
    if said in listed:
        out["copied"] = int(box is not None and box_iou(list(box), listed[said]) >= 0.9)
        out["copy_hit"] = int(box_iou(listed[said], list(truth[target])) >= BOX_ACC_THRESHOLD)
    return dict(out)


def listing_grounding(segmenter, scenes) -> dict:
    """:func:`score_listing_grounding` summed over the first command of each scene and turned
    into rates (per object for the list, per listed-and-boxed object for the words, per command
    for the rest)."""
    total: Counter = Counter()
    for scene in scenes:
        e = scene.expressions[0]
        segmenter.set_image(scene.rgb)
        parsed = parse_answer(segmenter.segment(e.text).answer)
        total.update(score_listing_grounding(parsed.reasoning, parsed.box,
                                             list_objects(scene.objects),
                                             scene.objects[e.target].spec.name))
    n, objs, boxed = max(1, len(scenes)), max(1, total["objects"]), max(1, total["boxed"])
    out = {"commands": len(scenes), "objects": total["objects"],
           "name_at_rank": total["names"] / objs, "box_at_rank": total["boxes"] / objs}
    out.update({w: total[w] / boxed for w in ("size", "colour", "shape")})
    out.update({k: total[k] / n for k in ("named", "hit", "copied", "copy_hit")})
    return out


def main(argv=None) -> int:
    from lens_ros.model.build import load_checkpoint
    from lens_ros.model.segmenter import LensSegmenter
    from lens_ros.demo.evaluate import val_scenes

    p = argparse.ArgumentParser(prog="python -m lens_ros.demo.probe",
                                description=__doc__.split("\n")[0])
    p.add_argument("model", help="checkpoint folder (a demo-recipe stage output)")
    p.add_argument("--pool-dir", default="data/demo_pool", help="folder of the scene pools")
    p.add_argument("--pool", default="normal", help="pool to probe the tokens on")
    p.add_argument("--train", type=int, default=4000, help="pool scenes to fit the probes on")
    p.add_argument("--test", type=int, default=1000,
                   help="pool scenes to score them on (the pool's last ones)")
    p.add_argument("--list-scenes", type=int, default=100, help="val scenes for the listing")
    p.add_argument("--grounding-scenes", type=int, default=0,
                   help="val commands for the listing-grounding split (listing-think models)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        ck = load_checkpoint(args.model, torch.device("cpu"), torch.float32)
        pool = load_pool(args.pool_dir, args.pool)
    except (OSError, ValueError, KeyError) as err:
        print(f"lens_ros.demo.probe: {err}", file=sys.stderr)
        return 2
    if args.train + args.test > len(pool):
        print(f"lens_ros.demo.probe: the pool has {len(pool)} scenes, fewer than --train + --test",
              file=sys.stderr)
        return 2
    model = ck.model.eval()
    probe = token_probe(model, ck.processor, pool, range(args.train),
                        range(len(pool) - args.test, len(pool)))
    print("| attribute at its token | linear probe acc (train) | held-out acc | held-out tokens |")
    print("|---|---|---|---|")
    for key, r in probe.items():
        print(f"| {key} | {r['train']:.3f} | {r['test']:.3f} | {r['n_test']} |")
    seg = LensSegmenter(model, ck.processor, ck.inference.replace(max_new_tokens=96))
    lst = listing_accuracy(seg, val_scenes(args.list_scenes))
    print(f"\nlist the objects ({lst['scenes']} val scenes, {lst['objects']} objects): name right "
          f"at its rank {lst['name_at_rank']:.3f} (listed in any order {lst['name_anywhere']:.3f}), "
          f"box@0.5 at its rank {lst['box_at_rank']:.3f}, "
          f"whole name list exact {lst['exact_list']:.3f}")
    if args.grounding_scenes > 0:
        seg = LensSegmenter(model, ck.processor, ck.inference.replace(max_new_tokens=160))
        g = listing_grounding(seg, val_scenes(args.grounding_scenes))
        print(f"\nlisting grounding ({g['commands']} val commands, {g['objects']} objects): list "
              f"name at rank {g['name_at_rank']:.3f}, box@0.5 at rank {g['box_at_rank']:.3f}; "
              f"words of well-boxed objects: size {g['size']:.3f}, colour {g['colour']:.3f}, "
              f"shape {g['shape']:.3f}; resolution names the target {g['named']:.3f}; box acc "
              f"{g['hit']:.3f}; answer copies the named object's listed box {g['copied']:.3f}; "
              f"a perfect copy would hit {g['copy_hit']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
