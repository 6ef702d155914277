"""What flows through lens_node's inference worker: frames, requests, outcomes, counters.

rclpy-free: a frame is the message object the node received (its header goes on every output);
``FrameBuffer`` keeps the recent ones so a command is answered on the frame nearest to its
arrival.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lens_ros.core import Segmentation, Status

#: Statuses that count as an error in the diagnostics (a request that could not be served).
ERROR_STATUSES = frozenset(Status) - {Status.OK, Status.NO_TARGET, Status.TRACKED,
                                      Status.CANCELED}


@dataclass
class Frame:
    """A camera frame as received: the message (its header goes on every output) and when."""

    msg: Any  #: sensor_msgs/Image (or any object the node's ``decode`` accepts)
    received: float  #: time.monotonic() at arrival
    seq: int = -1  #: arrival counter (-1: a frame given with an action goal)
    used: bool = False  #: the worker has segmented it at least once


@dataclass
class Request:
    """One command to answer; ``on_done`` (if set) receives its one ``Outcome``."""

    command: str
    received: float = field(default_factory=time.monotonic)
    image: Any = None  #: explicit frame message (action goal); None: use the camera buffer
    reasoning: bool | None = None  #: None: the node's ``reasoning`` parameter
    stream: Callable[[str], None] | None = None  #: called with the text generated so far
    cancel: Callable[[], bool] | None = None  #: polled before and during generation
    stage: Callable[[str], None] | None = None  #: told "encode", "generate", ...
    on_done: Callable[["Outcome"], None] | None = None
    source: str = "topic"  #: "topic", "action" or "repeat" (continuous re-run)
    cancel_reason: str = ""  #: why ``cancel`` turned True ("canceled by the client", ...)


@dataclass
class Outcome:
    """What happened to one request: the result and the frame it was computed on."""

    request: Request
    result: Segmentation
    frame: Frame | None = None  #: segmented frame; None when no usable frame was reached
    rgb: np.ndarray | None = None  #: HxWx3 uint8 RGB of ``frame`` when it could be decoded
    model_ms: float = 0.0  #: time inside LensSegmenter (set_image + segment)
    total_ms: float = 0.0  #: from taking the request to handing the outcome over
    message: Any = None  #: the LensResult built by the node's ``deliver`` (for the action)
    #: builtin_interfaces/Time of the frame of the last full LENS call (track mode); None: the
    #: result's own frame
    source_stamp: Any = None


@dataclass
class WorkerStats:
    """Counters for /diagnostics (read without a lock: each field is a plain int/float/str)."""

    frames_received: int = 0
    frames_dropped: int = 0  #: frames replaced by a newer one while the model was busy, unused
    commands_received: int = 0
    results: int = 0
    errors: int = 0
    by_status: dict = field(default_factory=lambda: collections.Counter())
    last_latency_ms: float = 0.0
    last_model_ms: float = 0.0
    last_overhead_ms: float = 0.0  #: decode + publish of the last result (total - model)
    last_error: str = ""
    last_result_error: bool = False  #: the most recent result had an error status


class FrameBuffer:
    """The last ``size`` frames; the worker takes the newest or the one nearest to a time."""

    def __init__(self, size: int) -> None:
        self._frames: collections.deque[Frame] = collections.deque(maxlen=size)
        self._seq = 0

    def put(self, msg: Any, now: float, busy: bool) -> bool:
        """Store a frame; True when it replaced an unused newest frame while busy (a drop)."""
        dropped = bool(busy and self._frames and not self._frames[-1].used)
        self._frames.append(Frame(msg, now, self._seq))
        self._seq += 1
        return dropped

    def newest(self) -> Frame | None:
        return self._frames[-1] if self._frames else None

    def nearest(self, t: float) -> Frame | None:
        """The frame whose arrival is nearest to ``t`` (monotonic seconds)."""
        frames = list(self._frames)  # copy: the callback thread appends concurrently
        return min(frames, key=lambda f: abs(f.received - t)) if frames else None

    def resize(self, size: int) -> None:
        self._frames = collections.deque(self._frames, maxlen=size)

    def __len__(self) -> int:
        return len(self._frames)
