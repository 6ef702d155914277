"""Samples and batches of the demo recipe, from a :class:`~lens_ros.demo.pool.ScenePool`.

A grounding sample is (scene, expression): prompt = the LENS chain-of-thought prompt with the
command, completion = ``<think>{reasoning}</think><answer>{"bbox_2d": [x1, y1, x2, y2]}</answer>``
with integer pixels of the 112 px LLM image (x2/y2 exclusive). A dense sample ("list the
objects") answers every object's canonical name in its think and every box, left to right.
With ``listing`` (an experiment, :func:`grounding_reasoning`) a grounding think first lists every
object with its box, left to right, then resolves the command, so the answer box can be copied
from the list (resolution becomes text-to-text matching).
Targets of the auxiliary dense loss: for each of the G x G merged visual tokens (4 x 4 at patch 14,
8 x 8 at patch 7 on 112 px), whether an object's box centre falls in its cell, and that object's
colour, shape, size and box.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from lens_ros.model.prompts import render_prompt
from lens_ros.model.presets import DEMO_TOKEN_GRID
from lens_ros.model.processing import IMAGE_TOKEN
from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE
from lens_ros.synthetic.vocabulary import COLOURS, LIST_COMMAND, SHAPES, SIZES
from lens_ros.demo.pool import ScenePool

COLOUR_NAMES = tuple(COLOURS)
SIZE_NAMES = tuple(SIZES)


def coords_text(box) -> str:
    """``x1, y1, x2, y2`` with integer pixels."""
    return ", ".join(str(int(round(v))) for v in box)


def box_text(box) -> str:
    """``{"bbox_2d": [x1, y1, x2, y2]}`` with integer pixels."""
    return '{"bbox_2d": [' + coords_text(box) + "]}"


def completion_text(reasoning: str, boxes: list) -> str:
    """The supervised completion (EOS ``<|im_end|>`` appended)."""
    answer = ", ".join(box_text(b) for b in boxes)
    return f"<think>{reasoning}</think><answer>{answer}</answer><|im_end|>"


def listing_text(objects) -> str:
    """Every object's name and box, left to right; ``objects`` = [[name, [x1, y1, x2, y2]], ...]
    as in a pool's meta (:func:`~lens_ros.synthetic.expressions.list_objects`), e.g.
    ``the large red cone [73, 30, 92, 51] and the small blue ball [12, 40, 25, 53]``."""
    return " and ".join(f"the {name} [{coords_text(box)}]" for name, box in objects)


_LISTED = re.compile(r"the ([a-z ]+?) \[(\d+), (\d+), (\d+), (\d+)\]")


def parse_listing(think: str) -> list[tuple[str, list[int]]]:
    """The inverse of :func:`listing_text` on the text before the first ``. `` of a listing
    think: [(name, [x1, y1, x2, y2]), ...] in the order written (malformed items are skipped)."""
    head = think.partition(". ")[0]
    return [(m[0], [int(v) for v in m[1:]]) for m in _LISTED.findall(head)]


def grounding_reasoning(objects, reasoning: str, listing: bool = False) -> str:
    """The think text of a grounding sample: the expression's ``reasoning``, or with ``listing``
    the scene's object list (:func:`listing_text`), ``. ``, then ``reasoning``."""
    return f"{listing_text(objects)}. {reasoning}" if listing else reasoning


@dataclass
class Sample:
    """One supervised sample. ``image`` HxWx3 uint8; ``mask`` HxW bool target (union for dense);
    ``box`` target xyxy (the first box for dense); ``level`` one of LEVELS or "dense"."""

    scene: int
    command: str
    completion: str
    image: np.ndarray
    mask: np.ndarray
    box: list
    level: str
    aux: dict | None = None  #: :func:`aux_targets` of the scene


def make_sample(pool: ScenePool, scene: int, choice: int, dense: bool, grid: int = DEMO_TOKEN_GRID,
                listing: bool = False) -> Sample:
    """Sample ``choice`` (an expression index, taken modulo) of ``scene``, or its dense sample;
    ``grid`` = merged visual tokens per image side (for the aux targets); ``listing``: see
    :func:`grounding_reasoning`."""
    meta = pool.meta[scene]
    img = pool.images[scene]
    if dense or not meta["expressions"]:
        names = [name for name, _ in meta["objects"]]
        boxes = [box for _, box in meta["objects"]]
        think = " and ".join(f"the {n}" for n in names)
        return Sample(scene, LIST_COMMAND, completion_text(think, boxes), img,
                      pool.labels[scene] >= 0, boxes[0], "dense",
                      aux_targets(pool, scene, grid))
    e = meta["expressions"][choice % len(meta["expressions"])]
    box = _target_box(pool, scene, e["target"])
    think = grounding_reasoning(meta["objects"], e["reasoning"], listing)
    return Sample(scene, e["text"], completion_text(think, [box]), img,
                  pool.mask(scene, e["target"]), box, e["level"],
                  aux_targets(pool, scene, grid))


def _target_box(pool: ScenePool, scene: int, target: int) -> list:
    name = pool.meta[scene]["names"][target]
    for n, box in pool.meta[scene]["objects"]:
        if n == name:
            return box
    raise KeyError(f"scene {scene}: no object named {name!r}")


def token_grid(model, side: int = DEMO_IMAGE_SIZE) -> int:
    """Merged visual tokens per side of a ``side`` px square image for ``model``'s vision tower."""
    v = model.lens_config.vision_config
    return side // (int(v["patch_size"]) * int(v["spatial_merge_size"]))


def token_cell(box, grid: int, width: int, height: int) -> int:
    """Row-major index of the merged visual token (of ``grid`` x ``grid`` over a ``width`` x
    ``height`` px image) that holds the centre of ``box`` (x1, y1, x2, y2 pixels)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return (min(int(cy * grid // height), grid - 1) * grid
            + min(int(cx * grid // width), grid - 1))


def aux_targets(pool: ScenePool, scene: int, grid: int = DEMO_TOKEN_GRID,
                side: int = DEMO_IMAGE_SIZE) -> dict:
    """Dense targets on the grid x grid merged visual tokens (row-major, as the merger's order).

    Returns ``obj`` (G*G,) float 0/1, ``colour``/``shape``/``size`` (G*G,) int64 (-100 = none),
    ``box`` (G*G, 4) float in [0, 1].
    """
    n = grid * grid
    obj = np.zeros(n, np.float32)
    colour = np.full(n, -100, np.int64)
    shape = np.full(n, -100, np.int64)
    size = np.full(n, -100, np.int64)
    box = np.zeros((n, 4), np.float32)
    area = np.zeros(n)
    for name, b in pool.meta[scene]["objects"]:
        sz, col, shp = name.split()
        k = token_cell(b, grid, side, side)
        a = (b[2] - b[0]) * (b[3] - b[1])
        if a <= area[k]:
            continue  # the larger object wins a shared cell
        area[k] = a
        obj[k] = 1.0
        colour[k], shape[k] = COLOUR_NAMES.index(col), SHAPES.index(shp)
        size[k] = SIZE_NAMES.index(sz)
        box[k] = np.asarray(b, np.float32) / side
    return {"obj": obj, "colour": colour, "shape": shape, "size": size, "box": box}


def collate(samples: list[Sample], tokenizer, processor, with_aux: bool = False) -> dict:
    """Right-padded teacher-forcing batch.

    Returns ``input_ids``/``attention_mask``/``labels`` (B, L) (labels -100 outside the
    completion), ``mm_token_type_ids`` (B, L), ``pixel_values`` (N, 3*2*14*14) float32,
    ``image_grid_thw`` (B, 3), ``prompt_lens`` list[int], and with ``with_aux`` the stacked
    :func:`aux_targets` as tensors.
    """
    ip = processor.image_processor
    out = ip(images=[Image.fromarray(s.image) for s in samples], return_tensors="pt")
    grid = out["image_grid_thw"]
    n_tok = int(grid[0].prod()) // int(getattr(ip, "merge_size", 2)) ** 2
    img_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    rows, prompt_lens = [], []
    for s in samples:
        prompt = render_prompt(s.command, True).replace(IMAGE_TOKEN, IMAGE_TOKEN * n_tok)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(s.completion, add_special_tokens=False)["input_ids"]
        rows.append((p, c))
        prompt_lens.append(len(p))
    length = max(len(p) + len(c) for p, c in rows)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    attn = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        seq = p + c
        ids[i, :len(seq)] = torch.tensor(seq)
        labels[i, len(p):len(seq)] = torch.tensor(c)
        attn[i, :len(seq)] = 1
    batch = {"input_ids": ids, "attention_mask": attn, "labels": labels,
             "mm_token_type_ids": (ids == img_id).long(), "pixel_values": out["pixel_values"],
             "image_grid_thw": grid, "prompt_lens": prompt_lens}
    if with_aux:
        t = [s.aux for s in samples]
        batch["aux"] = {k: torch.from_numpy(np.stack([x[k] for x in t])) for k in t[0]}
    return batch
