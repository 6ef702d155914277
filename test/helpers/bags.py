"""Bag helpers: small synthetic frames and reading a bag back with rosbags' AnyReader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.typesys import Stores, get_typestore

H, W = 120, 160  # small frames keep the tiny model at ~40 ms per frame


def scene(i: int) -> np.ndarray:
    rgb = np.full((H, W, 3), 80, np.uint8)
    rgb[30:90, 10 + i % 40:60 + i % 40] = (220, 40, 40)
    rgb[40:100, 100:140] = (40, 40, 220)
    return rgb


def read_bag(path: Path) -> dict[str, list]:
    """topic -> [(bag time, message or None if corrupted, raw)] read back with AnyReader, which
    takes the message definitions from the bag itself."""
    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as r:
        for c, t, raw in r.messages(connections=r.connections):
            try:
                msg = r.deserialize(raw, c.msgtype)
            except AnyReaderError:
                msg = None
            out.setdefault(c.topic, []).append((t, msg, bytes(raw)))
    return out
