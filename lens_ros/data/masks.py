"""Mask encodings used by the evaluator and the bag runner: COCO run-length encoding (RLE) for
per-sample records, and decoding of COCO annotations into ground-truth masks.

RLE strings are the compressed COCO ``counts`` (pycocotools), column-major, so a 640x480 mask
usually takes a few hundred bytes of JSON.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict:
    """HxW bool mask -> ``{"size": [H, W], "counts": str}`` (compressed COCO RLE, JSON-ready)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle`: HxW bool mask."""
    h, w = (int(v) for v in rle["size"])
    if h == 0 or w == 0:
        return np.zeros((h, w), dtype=bool)
    counts = rle["counts"]
    obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    if isinstance(counts, list):  # uncompressed RLE
        obj = mask_utils.frPyObjects(obj, h, w)
    return mask_utils.decode(obj).astype(bool)


def decode_annotation(segmentation, height: int, width: int) -> np.ndarray:
    """COCO ``segmentation`` (polygons, an RLE dict or a list of RLE dicts) -> HxW uint8 GT mask.

    Parts are **summed without clamping**, as the reference evaluation does, so pixels covered by
    two parts have the value 2 (see :mod:`lens_ros.evaluation.metrics`). An empty segmentation
    gives an all-zero mask.
    """
    h, w = int(height), int(width)
    if not segmentation:
        return np.zeros((h, w), dtype=np.uint8)
    if isinstance(segmentation, dict):
        parts = [segmentation]
    elif isinstance(segmentation[0], dict):
        parts = list(segmentation)
    else:  # polygons: list of [x0, y0, x1, y1, ...] in pixels
        parts = None
    if parts is None:
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in segmentation], h, w)
    else:
        rles = []
        for part in parts:
            counts = part["counts"]
            if isinstance(counts, list):
                rles.append(mask_utils.frPyObjects(part, h, w))
            else:
                rles.append({"size": list(part["size"]), "counts":
                             counts.encode("ascii") if isinstance(counts, str) else counts})
    decoded = mask_utils.decode(rles)
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    return decoded.sum(axis=2).astype(np.uint8)
