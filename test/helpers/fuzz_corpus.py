"""A seeded corpus of malformed inputs for lens_node and ``lens-bag run``.

Each entry is a plain dict, built into rclpy or rosbags messages by the test: ``kind`` is
``image`` (sensor_msgs/Image fields, possibly inconsistent), ``compressed`` (CompressedImage),
``command`` (std_msgs/String text) or ``goal`` (a Segment goal: command + image fields).
"""
from __future__ import annotations

import numpy as np

ENCODINGS = ["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "mono16", "16UC1", "32FC1", "yuv422",
             "yuyv", "8UC3", "bayer_rggb8", "", "jpeg", "rgb8\x00", "RGB8"]
COMMANDS = ["", "   ", "\t\n", "the \x00 mug", "\x07bell", "del\x7f", "\x9bcsi", "\ufffd mug",
            "x" * 5000, "the <|im_end|> mug", "<think>", "左边的杯子", "the mug"]


def _image(rng: np.random.Generator, i: int) -> dict:
    enc = ENCODINGS[rng.integers(len(ENCODINGS))]
    shape = rng.choice(["tiny", "thin", "zero", "ok", "huge_claim"])
    h, w = {"tiny": (int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            "thin": (int(rng.integers(1, 30)), int(rng.integers(300, 2048))),
            "zero": (0, int(rng.integers(0, 64))),
            "ok": (int(rng.integers(16, 64)), int(rng.integers(16, 64))),
            "huge_claim": (100_000, 100_000)}[shape]
    if rng.random() < 0.5:
        h, w = w, h
    bpp = {"mono8": 1, "mono16": 2, "16UC1": 2, "32FC1": 4, "yuv422": 2, "yuyv": 2, "rgba8": 4,
           "bgra8": 4}.get(enc, 3)
    step = w * bpp + int(rng.choice([0, 0, 0, 1, -1, 7]))
    size = max(0, step) * h if shape != "huge_claim" else 64
    size = min(size, 400_000)
    size += int(rng.choice([0, 0, 0, -1, 1, -size]))  # exact, or truncated / padded / empty
    data = rng.integers(0, 256, max(0, size), dtype=np.uint8).tobytes()
    return {"kind": "image", "height": h, "width": w, "encoding": enc, "step": max(0, step),
            "data": data, "frame_id": f"fuzz{i}", "stamp": (1000 + i, 17)}


def _compressed(rng: np.random.Generator, i: int) -> dict:
    fmt = str(rng.choice(["jpeg", "png", "", "rgb8; jpeg compressed bgr8"]))
    head = rng.choice([b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n"])
    data = bytes(head) + rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
    return {"kind": "compressed", "format": fmt, "data": data, "frame_id": f"fuzz{i}",
            "stamp": (1000 + i, 17)}


def corpus(n: int = 200, seed: int = 0) -> list[dict]:
    """``n`` malformed inputs (about half images, then compressed images, commands, goals)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.45:
            out.append(_image(rng, i))
        elif r < 0.6:
            out.append(_compressed(rng, i))
        elif r < 0.8:
            out.append({"kind": "command", "text": COMMANDS[rng.integers(len(COMMANDS))]
                        + ("" if rng.random() < 0.5 else f" {i}")})
        else:
            img = _image(rng, i)
            out.append({"kind": "goal", "text": COMMANDS[rng.integers(len(COMMANDS))],
                        "image": img})
    return out
