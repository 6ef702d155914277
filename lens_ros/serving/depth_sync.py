"""Depth for lens_node's 3D target: recent ``depth`` and ``camera_info`` messages, matched to a
segmented frame by stamp, turned into ``point``/``extent`` by ``lens_ros.target3d``.

rclpy-free (messages are duck-typed, so rosbags messages work too). The node calls
:meth:`DepthSync.put_depth` / :meth:`put_camera_info` from its subscriptions and
:meth:`attach` from the worker (the ``postprocess`` hook) after each successful model run.
"""
from __future__ import annotations

import collections
import threading

from lens_ros.core import BadImageError
from lens_ros.conversions.image import image_to_depth_m
from lens_ros.serving.requests import Outcome
from lens_ros.target3d import attach_target_3d, no_depth

#: a depth image further than this from the segmented frame (header stamps) is not used
MAX_DEPTH_GAP_S = 0.5


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class DepthSync:
    """The last ``size`` depth images and the newest camera_info (thread-safe)."""

    def __init__(self, size: int = 10) -> None:
        self._depths: collections.deque = collections.deque(maxlen=size)
        self._info = None
        self._lock = threading.Lock()

    def put_depth(self, msg) -> None:
        """Keep a depth image (``sensor_msgs/Image`` 16UC1 mm or 32FC1 m, aligned)."""
        with self._lock:
            self._depths.append(msg)

    def put_camera_info(self, msg) -> None:
        """Keep the newest ``sensor_msgs/CameraInfo`` of the depth image."""
        with self._lock:
            self._info = msg

    def nearest_depth(self, stamp):
        """The depth message nearest in time to ``stamp`` (builtin_interfaces/Time), and the
        gap in seconds; (None, inf) before any depth arrived."""
        with self._lock:
            depths = list(self._depths)
        if not depths:
            return None, float("inf")
        t = _seconds(stamp)
        if t <= 0:  # unstamped camera: the newest depth is the best guess
            return depths[-1], 0.0
        best = min(reversed(depths), key=lambda m: abs(_seconds(m.header.stamp) - t))
        return best, abs(_seconds(best.header.stamp) - t)

    def attach(self, out: Outcome) -> None:
        """Set ``out.result`` to the result with ``point``/``extent``, or to NO_DEPTH with the
        reason (no depth or camera_info yet, stale or malformed depth, no valid depth under the
        mask). Never raises for bad depth."""
        if out.frame is None:
            return
        stamp = out.frame.msg.header.stamp
        msg, gap = self.nearest_depth(stamp)
        with self._lock:
            info = self._info
        if msg is not None and gap > MAX_DEPTH_GAP_S:
            out.result = no_depth(out.result, f"the nearest depth image is {gap:.2f} s from the "
                                  f"frame (more than {MAX_DEPTH_GAP_S} s); is the depth stream "
                                  "running and stamped like the camera?")
            return
        try:
            depth = image_to_depth_m(msg) if msg is not None else None
        except BadImageError as err:
            out.result = no_depth(out.result, f"bad depth image: {err}")
            return
        out.result = attach_target_3d(out.result, depth, info)
