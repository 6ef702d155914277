"""Quick held-out evaluation during the demo recipe: greedy answers on VAL-split scenes.

The final numbers come from ``lens-eval`` on the test split; this is the in-training monitor
(box accuracy and think exactness are the first signs of grounding take-off).
"""
from __future__ import annotations

import re
import time
from collections import defaultdict
from functools import lru_cache

import numpy as np

from lens_ros.evaluation.metrics import box_iou, intersection_union, sentence_iou
from lens_ros.model.answers import parse_answer
from lens_ros.model.config import InferenceConfig
from lens_ros.model.segmenter import LensSegmenter
from lens_ros.synthetic.expressions import list_objects
from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE, SceneConfig
from lens_ros.synthetic.splits import make_split_scene
from lens_ros.demo.samples import grounding_reasoning, parse_listing

#: a completion is format-valid when it is exactly think + one JSON box answer
VALID = re.compile(r'<think>[a-z0-9 ,.\[\]]+</think><answer>\{"bbox_2d": \[\d+, \d+, \d+, \d+\]\}'
                   r"</answer>")


@lru_cache(maxsize=4)
def val_scenes(n: int, size: int = DEMO_IMAGE_SIZE) -> tuple:
    """The first ``n`` val-split scenes (levels balanced), cached."""
    cfg = SceneConfig(width=size, height=size)
    return tuple(make_split_scene("val", i, cfg) for i in range(n))


def evaluate(model, processor, n: int = 100, max_new_tokens: int = 160,
             listing: bool = False, inference: InferenceConfig | None = None) -> dict:
    """Box acc@0.5, mask IoU (cIoU and mean), format validity and think exactness on ``n`` val
    scenes, overall and per level (``box_acc/<level>``). ``listing``: the expected think starts
    with the object list (:func:`~lens_ros.demo.samples.grounding_reasoning`); then
    ``eval/list_names`` = the list names every object right, in order (boxes not compared).
    ``inference``: the model's inference defaults (the demo preset's turn SAM 2's stability
    fallback off; the library defaults would score masks the model never trained); greedy,
    with the reasoning prompt and no repetition penalty either way. Leaves the model in train
    mode."""
    config = (inference or InferenceConfig()).replace(
        max_new_tokens=max_new_tokens, reasoning=True, repetition_penalty=1.0)
    seg = LensSegmenter(model, processor, config)
    t0 = time.perf_counter()
    by_level: dict[str, list] = defaultdict(list)
    inter = union = 0.0
    rows = []
    for scene in val_scenes(n):
        e = scene.expressions[0]
        objects = list_objects(scene.objects)
        expected = grounding_reasoning(objects, e.reasoning, listing)
        seg.set_image(scene.rgb)
        r = seg.segment(e.text)
        parsed = parse_answer(r.answer)
        iou = box_iou(list(parsed.box), list(e.box)) if parsed.box is not None else 0.0
        i, u = intersection_union(r.mask, e.mask.astype(np.uint8))
        inter, union = inter + i, union + u
        row = {"acc": float(iou >= 0.5), "box_iou": iou, "mask_iou": sentence_iou(i, u),
               "valid": float(bool(VALID.fullmatch(r.answer.strip()))),
               "think": float(parsed.reasoning == expected)}
        if listing:
            said = [name for name, _ in parse_listing(parsed.reasoning)]
            row["list_names"] = float(said == [name for name, _ in objects])
        rows.append(row)
        by_level[e.level].append(row)
    model.train()
    out = {f"eval/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["eval/ciou"] = inter / union if union else 0.0
    for level, rs in by_level.items():
        out[f"eval/acc/{level}"] = float(np.mean([r["acc"] for r in rs]))
    out["eval/n"] = len(rows)
    out["eval/seconds"] = time.perf_counter() - t0
    return out
