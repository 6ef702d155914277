"""Write synthetic scenes and sequences as rosbag2 bags (mcap or sqlite3) that can be replayed
through ``lens_node`` (``lens-bag play``), plus a ground-truth sidecar to score the answers.

Topics (all frames carry ``frame_id`` ``camera_optical_frame`` and the same stamp per frame):
  ``/camera/image``        sensor_msgs/Image rgb8
  ``/camera/depth``        sensor_msgs/Image 32FC1 metres (NaN = no measurement), aligned
  ``/camera/camera_info``  sensor_msgs/CameraInfo (plumb_bob, no distortion)
  ``/lens/command``        std_msgs/String, published ``command_delay`` after a scene appears

Sidecar ``ground_truth.jsonl`` (inside the bag folder): one line per (frame, command) pair that
the frame answers, so a result is scored by (its header stamp, its command)::

  {"stamp_ns", "frame", "scene", "command", "command_stamp_ns", "level", "kind", "reasoning",
   "target", "gt_box": [x1, y1, x2, y2] (exclusive x2/y2), "gt_mask": {"size", "counts"} (COCO
   RLE), "gt_point": [x, y, z] (target centre, camera optical frame, metres)}

Bags are written through ``lens_ros.bag.io.OutputBag`` (Jazzy typestore, real rosbag2 layout).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lens_ros.bag.io import OutputBag
from lens_ros.data.masks import encode_rle
from lens_ros.conversions.image import make_header, numpy_to_image, rosbags_types
from lens_ros.synthetic.scene import Expression, Scene
from lens_ros.synthetic.sequence import Sequence

IMAGE_TOPIC, DEPTH_TOPIC = "/camera/image", "/camera/depth"
INFO_TOPIC, COMMAND_TOPIC = "/camera/camera_info", "/lens/command"
FRAME_ID = "camera_optical_frame"
SIDECAR = "ground_truth.jsonl"
START_NS = 1_700_000_000 * 10**9  #: bag time of the first frame


class SyntheticBagWriter:
    """Frames, commands and ground truth of synthetic scenes into one bag (context manager)."""

    def __init__(self, path: str | Path, storage: str = "mcap"):
        self.path = Path(path)
        self._bag = OutputBag(self.path, storage)
        ts = self._bag.typestore
        self._types = rosbags_types(ts)
        self._info_cls = ts.types["sensor_msgs/msg/CameraInfo"]
        self._roi_cls = ts.types["sensor_msgs/msg/RegionOfInterest"]
        self._string_cls = ts.types["std_msgs/msg/String"]
        self._sidecar = None
        self.frames = 0

    def __enter__(self) -> "SyntheticBagWriter":
        self._bag.__enter__()
        for topic, msgtype in ((IMAGE_TOPIC, "sensor_msgs/msg/Image"),
                               (DEPTH_TOPIC, "sensor_msgs/msg/Image"),
                               (INFO_TOPIC, "sensor_msgs/msg/CameraInfo"),
                               (COMMAND_TOPIC, "std_msgs/msg/String")):
            self._bag.add_topic(topic, msgtype)
        self._sidecar = open(self.path / SIDECAR, "w", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        self._sidecar.close()
        self._bag.__exit__(*exc)

    def _camera_info(self, scene: Scene, header):
        k = scene.intrinsics
        return self._info_cls(
            header=header, height=k.height, width=k.width, distortion_model="plumb_bob",
            d=np.zeros(5), k=k.matrix.reshape(-1),
            r=np.eye(3).reshape(-1),
            p=np.array([k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0], dtype=np.float64),
            binning_x=0, binning_y=0,
            roi=self._roi_cls(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    def write_frame(self, scene: Scene, stamp_ns: int, scene_id: int,
                    answers: list[tuple[Expression, int]]) -> None:
        """Write one frame (image, depth, camera_info) and the ground truth of the commands it
        answers, given as (expression, command stamp) pairs."""
        header = make_header(self._types, stamp_ns, FRAME_ID)
        self._bag.write(IMAGE_TOPIC, stamp_ns, numpy_to_image(scene.rgb, "rgb8", header,
                                                              self._types))
        self._bag.write(DEPTH_TOPIC, stamp_ns, numpy_to_image(
            np.ascontiguousarray(scene.depth, dtype=np.float32), "32FC1", header, self._types))
        self._bag.write(INFO_TOPIC, stamp_ns, self._camera_info(scene, header))
        for e, command_ns in answers:
            self._sidecar.write(json.dumps({
                "stamp_ns": int(stamp_ns), "frame": self.frames, "scene": scene_id,
                "command": e.text, "command_stamp_ns": int(command_ns), "level": e.level,
                "kind": e.kind, "reasoning": e.reasoning, "target": e.target_name,
                "gt_box": [int(v) for v in e.box], "gt_mask": encode_rle(e.mask),
                "gt_point": [float(v) for v in scene.objects[e.target].centre]}) + "\n")
        self.frames += 1

    def write_command(self, text: str, stamp_ns: int) -> None:
        """Publish a command (std_msgs/String) at bag time ``stamp_ns``."""
        self._bag.write(COMMAND_TOPIC, stamp_ns, self._string_cls(data=text))


def write_scene_bag(path: str | Path, scenes: list[Scene], frames_per_scene: int = 4,
                    period: float = 0.5, command_delay: float = 0.1,
                    command_spacing: float = 0.05, storage: str = "mcap") -> Path:
    """A bag that shows each static scene for ``frames_per_scene`` frames, ``period`` seconds
    apart, and publishes each of the scene's commands ``command_delay`` after its first frame.

    Every frame of a scene answers all of that scene's commands (see the sidecar format).
    Returns the bag folder.
    """
    if frames_per_scene < 1 or period <= 0:
        raise ValueError(f"need frames_per_scene >= 1 and period > 0, got "
                         f"{frames_per_scene}, {period}")
    period_ns = int(period * 1e9)
    with SyntheticBagWriter(path, storage) as w:
        t = START_NS
        for s, scene in enumerate(scenes):
            cmds = [(e, t + int((command_delay + j * command_spacing) * 1e9))
                    for j, e in enumerate(scene.expressions)]
            for k in range(frames_per_scene):
                w.write_frame(scene, t + k * period_ns, s, cmds)
                if k == 0:
                    for e, ns in cmds:
                        w.write_command(e.text, ns)
            t += frames_per_scene * period_ns
    return Path(path)


def write_sequence_bag(path: str | Path, sequence: Sequence, command_delay: float = 0.05,
                       storage: str = "mcap") -> Path:
    """A bag of a moving-object sequence at its fps; the command is published once,
    ``command_delay`` after the first frame; every frame has its own ground truth line."""
    period_ns = int(1e9 / sequence.fps)
    command_ns = START_NS + int(command_delay * 1e9)
    with SyntheticBagWriter(path, storage) as w:
        for i, frame in enumerate(sequence.frames):
            w.write_frame(frame, START_NS + i * period_ns, 0,
                          [(frame.expressions[0], command_ns)])
            if i == 0:
                w.write_command(sequence.command, command_ns)
    return Path(path)


def read_ground_truth(path: str | Path) -> list[dict]:
    """The sidecar records of a bag folder written here (``gt_mask`` left as RLE)."""
    with open(Path(path) / SIDECAR, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
