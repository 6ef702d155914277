"""A tiny RefCOCO-layout dataset of generated shapes, for tests, benchmarks and smoke runs.

:func:`write_toy_refer_seg` writes ``refer_seg/refcoco/refs(unc).p`` (plain dicts, protocol 2,
as the real files), ``instances.json`` (COCO annotations with compressed-RLE or polygon
segmentations) and PNG images under ``images/mscoco/images/train2014``. It can also add the
kinds of bad records real data has (missing image file, empty segmentation, degenerate box),
which the loader must skip and count.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from lens_ros.geometry import mask_to_box

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220),
          "yellow": (230, 210, 40)}


def _shape_mask(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
    r = int(rng.integers(max(3, min(h, w) // 8), max(4, min(h, w) // 4)))
    if kind == "circle":
        cv2.circle(m, (cx, cy), r, 1, -1)
    else:
        top_left = (max(0, cx - r), max(0, cy - r))
        cv2.rectangle(m, top_left, (min(w - 1, cx + r), min(h - 1, cy + r)), 1, -1)
    return m.astype(bool)


def make_scene(rng: np.random.Generator, h: int, w: int, n_objects: int = 2):
    """An HxWx3 uint8 RGB image with ``n_objects`` coloured shapes.

    Returns (image, objects) where each object is (mask HxW bool, sentence str); later shapes are
    drawn over earlier ones and their masks are cut accordingly.
    """
    img = np.full((h, w, 3), 235, dtype=np.uint8)
    img += rng.integers(0, 12, size=(h, w, 3), dtype=np.uint8)
    objects = []
    names = list(COLORS)
    for k in range(n_objects):
        kind = "circle" if k % 2 == 0 else "square"
        color = names[int(rng.integers(len(names)))]
        m = _shape_mask(rng, h, w, kind)
        for prev, _ in objects:
            prev &= ~m
        img[m] = COLORS[color]
        objects.append((m, f"{color} {kind}"))
    return img, [(m, s) for m, s in objects if m.any()]


def _ann(ann_id: int, image_id: int, mask: np.ndarray, polygon: bool) -> dict:
    x1, y1, x2, y2 = mask_to_box(mask)  # x2/y2 exclusive, as COCO's x + w
    bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    if polygon:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        seg = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
    else:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        seg = [{"size": rle["size"], "counts": rle["counts"].decode("ascii")}]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": bbox,
            "area": float(mask.sum()), "iscrowd": 0, "segmentation": seg}


def write_toy_refer_seg(root: str | Path, n_images: int = 4, size: tuple[int, int] = (48, 64),
                        seed: int = 0, bad_records: bool = False,
                        dataset: str = "refcoco") -> Path:
    """Write a tiny RefCOCO-layout dataset under ``root``; returns ``root`` (the refer_seg dir).

    Every image gets 2 objects, each one ref with two sentences. Odd annotations use polygons,
    even ones compressed RLE. With ``bad_records`` three bad refs are added: one whose image
    file is missing, one with an empty segmentation, one with a zero-width box.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    img_dir = root / "images/mscoco/images/train2014"
    ds_dir = root / dataset
    img_dir.mkdir(parents=True, exist_ok=True)
    ds_dir.mkdir(parents=True, exist_ok=True)
    images, anns, refs = [], [], []
    h, w = size
    for i in range(n_images):
        image_id = 1000 + i
        img, objects = make_scene(rng, h, w)
        fname = f"COCO_train2014_{image_id:012d}.png"
        cv2.imwrite(str(img_dir / fname), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": image_id, "file_name": fname, "height": h, "width": w})
        for mask, sent in objects:
            ann_id = len(anns) + 1
            anns.append(_ann(ann_id, image_id, mask, polygon=ann_id % 2 == 1))
            refs.append({"ref_id": len(refs), "ann_id": ann_id, "image_id": image_id,
                         "category_id": 1, "split": "train", "file_name": fname,
                         "sentences": [{"sent": sent, "sent_id": 2 * ann_id},
                                       {"sent": f"the {sent}", "sent_id": 2 * ann_id + 1}]})
    if bad_records:
        images.append({"id": 9999, "file_name": "COCO_train2014_000000009999.png",
                       "height": h, "width": w})
        good = anns[0]
        anns.append({**good, "id": 900, "image_id": 9999})
        anns.append({**good, "id": 901, "segmentation": []})
        anns.append({**good, "id": 902, "bbox": [3.0, 3.0, 0.0, 5.0]})
        for ann_id, image_id in ((900, 9999), (901, good["image_id"]), (902, good["image_id"])):
            refs.append({"ref_id": len(refs), "ann_id": ann_id, "image_id": image_id,
                         "category_id": 1, "split": "train", "file_name": "x.png",
                         "sentences": [{"sent": "bad record", "sent_id": 10 ** 6 + ann_id}]})
    refs.append({**refs[0], "ref_id": len(refs), "split": "val"})
    with open(ds_dir / "refs(unc).p", "wb") as fh:
        pickle.dump(refs, fh, protocol=2)
    with open(ds_dir / "instances.json", "w", encoding="utf-8") as fh:
        json.dump({"images": images, "annotations": anns,
                   "categories": [{"id": 1, "name": "shape"}]}, fh)
    return root
