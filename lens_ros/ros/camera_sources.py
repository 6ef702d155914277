"""Frame sources of ``lens-camera`` and the camera_calibration YAML reader (no rclpy).

A source yields :class:`Frame` objects forever (file sources loop) or until the device stops.
Images are HxWx3 uint8 RGB; depth (synthetic scenes only) is HxW float32 metres, NaN where
invalid, aligned with the image; intrinsics are pinhole (fx, fy, cx, cy in pixels).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import yaml

from lens_ros.data.items import BadRecordError
from lens_ros.data.sources import read_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class SourceError(Exception):
    """A source cannot be opened or read (missing device or file, unreadable image, bad YAML)."""


@dataclass
class Calibration:
    """A camera calibration in the ROS ``camera_calibration`` YAML format (sizes in pixels).

    ``k`` 3x3, ``d`` distortion coefficients, ``r`` 3x3 rectification, ``p`` 3x4 projection,
    all row-major lists, as in ``sensor_msgs/CameraInfo``.
    """

    width: int
    height: int
    k: list[float]
    d: list[float] = field(default_factory=list)
    r: list[float] = field(default_factory=lambda: [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0])
    p: list[float] = field(default_factory=list)
    distortion_model: str = "plumb_bob"
    camera_name: str = ""

    @classmethod
    def pinhole(cls, fx: float, fy: float, cx: float, cy: float, width: int,
                height: int) -> "Calibration":
        """An undistorted pinhole camera (what the synthetic scenes render)."""
        return cls(width, height, [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], [0.0] * 5,
                   p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def _matrix(doc: dict, key: str, n: int, path: Path, required: bool = True) -> list[float]:
    entry = doc.get(key)
    if entry is None:
        if required:
            raise SourceError(f"{path}: missing '{key}' (a camera_calibration YAML has "
                              "image_width, image_height, camera_matrix, distortion_coefficients,"
                              " rectification_matrix, projection_matrix)")
        return []
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, list) or (n and len(data) != n):
        raise SourceError(f"{path}: '{key}.data' must be a list of {n or 'some'} numbers")
    return [float(v) for v in data]


def load_calibration(path: str | Path) -> Calibration:
    """Read a ``camera_calibration`` / ``camera_info_manager`` YAML file.

    Raises:
      SourceError: missing file, not YAML, or a field missing or of the wrong size.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"calibration file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SourceError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(doc, dict) or "image_width" not in doc or "image_height" not in doc:
        raise SourceError(f"{path}: needs image_width and image_height")
    k = _matrix(doc, "camera_matrix", 9, path)
    p = _matrix(doc, "projection_matrix", 12, path, required=False)
    if not p:
        p = [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    return Calibration(width=int(doc["image_width"]), height=int(doc["image_height"]), k=k,
                       d=_matrix(doc, "distortion_coefficients", 0, path, required=False),
                       r=_matrix(doc, "rectification_matrix", 9, path, required=False)
                       or [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                       p=p, distortion_model=str(doc.get("distortion_model", "plumb_bob")),
                       camera_name=str(doc.get("camera_name", "")))


@dataclass
class Frame:
    """One frame: ``rgb`` HxWx3 uint8; ``depth`` HxW float32 metres or None; ``calibration``
    of this frame when the source knows it (synthetic), else None; ``note`` text to print when
    the frame starts something new (e.g. the commands of a new synthetic scene)."""

    rgb: np.ndarray
    depth: np.ndarray | None = None
    calibration: Calibration | None = None
    note: str = ""


def _read_rgb(path: Path) -> np.ndarray:
    try:
        return read_rgb(path)
    except BadRecordError as err:
        raise SourceError(str(err)) from None


def image_files(folder: Path) -> list[Path]:
    """The images of a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def still_frames(paths: list[Path], loop: bool = True) -> Iterator[Frame]:
    """Images from files (read once each, then cycled)."""
    frames = [Frame(_read_rgb(p)) for p in paths]
    while True:
        yield from frames
        if not loop:
            return


def capture_frames(capture: cv2.VideoCapture, name: str, loop: bool) -> Iterator[Frame]:
    """Frames of an opened VideoCapture; a file rewinds at its end when ``loop``."""
    while True:
        ok, bgr = capture.read()
        if not ok:
            if loop and capture.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = capture.read()
            if not ok:
                capture.release()
                return
        yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def synthetic_frames(size: int = 224, scenes: int = 12, frames_per_scene: int = 40,
                     split: str = "test") -> Iterator[Frame]:
    """The synthetic tabletop scenes of ``split`` (scene i = index i), each shown for
    ``frames_per_scene`` frames, with aligned depth and their intrinsics; cycles forever."""
    from lens_ros.synthetic.scene import SceneConfig
    from lens_ros.synthetic.splits import make_split_scene

    cache: dict[int, Frame] = {}
    i = 0
    while True:
        index = i % scenes
        if index not in cache:
            scene = make_split_scene(split, index, SceneConfig(width=size, height=size),
                                     n_expressions=3)
            k = scene.intrinsics
            names = ", ".join(f"'{e.text}'" for e in scene.expressions)
            cache[index] = Frame(scene.rgb, np.ascontiguousarray(scene.depth, np.float32),
                                 Calibration.pinhole(k.fx, k.fy, k.cx, k.cy, k.width, k.height),
                                 note=f"scene {index} of {split}: try {names}")
        frame = cache[index]
        yield frame
        for _ in range(frames_per_scene - 1):
            yield Frame(frame.rgb, frame.depth, frame.calibration)
        i += 1


def open_source(source: str, loop: bool = True) -> Iterator[Frame]:
    """Open a webcam (``/dev/videoN`` or an integer index), a video file, an image folder or an
    image file.

    Raises:
      SourceError: the device or file does not exist or cannot be opened/decoded.
    """
    path = Path(source)
    if source.isdigit() or source.startswith("/dev/video"):
        if not source.isdigit() and not path.exists():
            raise SourceError(f"camera device {source} does not exist (ls /dev/video* lists the"
                              " cameras; in a container pass the device through)")
        capture = cv2.VideoCapture(int(source) if source.isdigit() else source, cv2.CAP_V4L2)
        if not capture.isOpened():
            raise SourceError(f"cannot open camera {source} (busy, no permission: add yourself "
                              "to the 'video' group, or not a capture device)")
        return capture_frames(capture, source, loop=False)
    if not path.exists():
        raise SourceError(f"{source} does not exist (give a /dev/videoN device, a video file, "
                          "an image folder or an image, or --synthetic)")
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise SourceError(f"folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return still_frames(files, loop)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        _read_rgb(path)  # fail now, not at the first frame
        return still_frames([path], loop)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened() or not capture.read()[0]:
        raise SourceError(f"cannot decode video {source} (OpenCV has no reader for it)")
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return capture_frames(capture, source, loop)
