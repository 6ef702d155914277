"""numpy <-> ``sensor_msgs/Image`` conversion: cv_bridge's job, without cv_bridge (no PyPI wheel).

This module does not import rclpy. It reads any object with the ``sensor_msgs/Image`` fields
(rclpy messages, ``rosbags`` messages) and builds messages through a :class:`MessageTypes`
bundle, so the node, the bag tools and the tests share one converter.

Conventions: arrays are HxW (one channel) or HxWxC, C-contiguous, in the encoding's own channel
order and dtype (``bgr8`` stays BGR). The model wants HxWx3 uint8 RGB: use :func:`image_to_rgb`.
Depth: ``16UC1`` is millimetres, ``32FC1`` metres (REP 118); :func:`image_to_depth_m` gives metres.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from lens_ros.core import BadImageError


class ImageConversionError(BadImageError):
    """Raised when an Image message and an array cannot be converted into each other."""


@dataclass(frozen=True)
class Encoding:
    """Memory layout of one ``sensor_msgs/Image`` encoding."""

    dtype: np.dtype  #: element type
    channels: int  #: values per pixel (2 for packed YUV 4:2:2, which decodes to 3)


ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(np.dtype(np.uint8), 3),
    "bgr8": Encoding(np.dtype(np.uint8), 3),
    "rgba8": Encoding(np.dtype(np.uint8), 4),
    "bgra8": Encoding(np.dtype(np.uint8), 4),
    "mono8": Encoding(np.dtype(np.uint8), 1),
    "8UC1": Encoding(np.dtype(np.uint8), 1),
    "8UC3": Encoding(np.dtype(np.uint8), 3),
    "mono16": Encoding(np.dtype(np.uint16), 1),
    "16UC1": Encoding(np.dtype(np.uint16), 1),
    "32FC1": Encoding(np.dtype(np.float32), 1),
    "yuv422": Encoding(np.dtype(np.uint8), 2),  # UYVY byte order
    "uyvy": Encoding(np.dtype(np.uint8), 2),
    "yuv422_yuy2": Encoding(np.dtype(np.uint8), 2),  # YUYV byte order
    "yuyv": Encoding(np.dtype(np.uint8), 2),
}
_DEPTH = ("16UC1", "32FC1")
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
           "mono8": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB,
           "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
           "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2}


@dataclass(frozen=True)
class MessageTypes:
    """The message classes a converter builds: rclpy's generated classes or rosbags' dataclasses.

    ``numpy_data`` is True for rosbags (``uint8[]`` fields hold numpy arrays) and False for rclpy
    (fields take ``bytes``; assigning a numpy array there is ~500x slower).
    """

    Image: Any
    Header: Any
    Time: Any
    numpy_data: bool = False
    extra: Any = None  #: further classes by name (e.g. LensResult, Point), used by other converters

    def __getattr__(self, name: str) -> Any:  # LensResult, Point, ... through `extra`
        extra = object.__getattribute__(self, "extra") or {}
        if name in extra:
            return extra[name]
        raise AttributeError(name)


def rclpy_types() -> MessageTypes:
    """Message classes generated for rclpy (imports the message packages, not rclpy itself)."""
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point, Vector3
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    from lens_ros.msg import LensResult

    return MessageTypes(Image, Header, Time, numpy_data=False,
                        extra={"LensResult": LensResult, "Point": Point, "Vector3": Vector3,
                               "CompressedImage": CompressedImage})


def rosbags_types(typestore) -> MessageTypes:
    """Message classes of a ``rosbags`` typestore (which must have ``lens_ros/msg/LensResult``)."""
    t = typestore.types
    extra = {"Point": t["geometry_msgs/msg/Point"], "Vector3": t["geometry_msgs/msg/Vector3"],
             "CompressedImage": t["sensor_msgs/msg/CompressedImage"]}
    if "lens_ros/msg/LensResult" in t:
        extra["LensResult"] = t["lens_ros/msg/LensResult"]
    return MessageTypes(t["sensor_msgs/msg/Image"], t["std_msgs/msg/Header"],
                        t["builtin_interfaces/msg/Time"], numpy_data=True, extra=extra)


def make_header(types: MessageTypes, stamp_ns: int = 0, frame_id: str = ""):
    """A ``std_msgs/Header`` with the given stamp (integer nanoseconds) and frame."""
    stamp = types.Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))
    return types.Header(stamp=stamp, frame_id=frame_id)


def stamp_to_ns(header) -> int:
    """Integer nanoseconds of a header's stamp."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _field_error(msg, text: str) -> ImageConversionError:
    return ImageConversionError(
        f"{text} (encoding={getattr(msg, 'encoding', '?')!r}, height={getattr(msg, 'height', '?')}, "
        f"width={getattr(msg, 'width', '?')}, step={getattr(msg, 'step', '?')}, "
        f"len(data)={len(getattr(msg, 'data', b''))})")


def image_to_numpy(msg) -> np.ndarray:
    """Decode an Image message into an array in its own encoding.

    Arguments:
      msg: any object with the ``sensor_msgs/Image`` fields.
    Returns:
      np.ndarray: HxW (one channel) or HxWxC in the encoding's dtype and channel order
      (packed YUV 4:2:2 as HxWx2 uint8). A zero-copy view when rows are unpadded and the byte
      order is native; otherwise a copy.
    Raises:
      ImageConversionError: unknown encoding, zero size, or ``step``/``data`` inconsistent.
    """
    enc = ENCODINGS.get(msg.encoding)
    if enc is None:
        raise ImageConversionError(
            f"encoding {msg.encoding!r} is not supported; use one of {sorted(ENCODINGS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise _field_error(msg, "image has zero size")
    row_bytes = w * enc.channels * enc.dtype.itemsize
    if enc.channels == 2 and w % 2:
        raise _field_error(msg, "packed YUV 4:2:2 needs an even width")
    if step < row_bytes:
        raise _field_error(msg, f"step is smaller than width*channels*bytes = {row_bytes}")
    buf = np.frombuffer(msg.data, dtype=np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    if buf.size != step * h:
        raise _field_error(msg, f"data length does not equal step*height = {step * h}")
    rows = buf.reshape(h, step)[:, :row_bytes]
    dtype = enc.dtype
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    if step != row_bytes:
        rows = np.ascontiguousarray(rows)
    arr = rows.view(dtype).reshape((h, w, enc.channels) if enc.channels > 1 else (h, w))
    if not dtype.isnative:
        arr = arr.astype(enc.dtype)
    return arr


def numpy_to_image(array: np.ndarray, encoding: str, header=None,
                   types: MessageTypes | None = None):
    """Build an Image message from an array laid out in ``encoding``.

    Arguments:
      array (np.ndarray): HxW or HxWxC matching the encoding's channels and dtype (a bool mask
        is accepted for mono8 and written as 0/255).
      encoding (str): one of :data:`ENCODINGS`.
      header: the header to copy (e.g. the source frame's); a default header when None.
      types (MessageTypes): message classes to build; rclpy's when None.
    Raises:
      ImageConversionError: unknown encoding or an array that does not fit it.
    """
    types = types or default_message_types()
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ImageConversionError(
            f"encoding {encoding!r} is not supported; use one of {sorted(ENCODINGS)}")
    arr = np.asarray(array)
    if arr.dtype == np.bool_ and encoding in ("mono8", "8UC1"):
        arr = arr.astype(np.uint8) * np.uint8(255)
    channels = arr.shape[2] if arr.ndim == 3 else 1
    if arr.ndim not in (2, 3) or channels != enc.channels or arr.dtype != enc.dtype:
        raise ImageConversionError(
            f"array of shape {arr.shape} and dtype {arr.dtype} does not fit encoding {encoding!r} "
            f"({enc.channels} channel(s) of {enc.dtype})")
    h, w = arr.shape[:2]
    raw = np.ascontiguousarray(arr).tobytes()
    data = np.frombuffer(raw, dtype=np.uint8) if types.numpy_data else raw
    return types.Image(header=header if header is not None else make_header(types),
                       height=h, width=w, encoding=encoding,
                       is_bigendian=0 if sys.byteorder == "little" or enc.dtype.itemsize == 1 else 1,
                       step=w * channels * enc.dtype.itemsize, data=data)


def image_to_rgb(msg) -> np.ndarray:
    """Decode a camera Image into HxWx3 uint8 RGB, the model's input.

    Colour encodings are reordered, alpha dropped, mono replicated to 3 channels, 16-bit mono
    scaled to 8 bits (value >> 8), YUV 4:2:2 converted (BT.601). Depth encodings are refused.
    """
    if msg.encoding in _DEPTH:
        raise ImageConversionError(
            f"encoding {msg.encoding!r} is depth, not a camera image; send it on the depth topic")
    arr = image_to_numpy(msg)
    enc = msg.encoding
    if enc in ("rgb8", "8UC3"):
        return arr
    if enc == "mono16":
        arr, enc = (arr >> 8).astype(np.uint8), "mono8"
    return cv2.cvtColor(arr, _TO_RGB[enc])  # cv2 is ~10x faster than numpy fancy indexing here


def rgb_to_image(rgb: np.ndarray, header=None, types: MessageTypes | None = None):
    """An ``rgb8`` Image from an HxWx3 uint8 RGB array."""
    return numpy_to_image(rgb, "rgb8", header, types)


def mask_to_image(mask: np.ndarray, header=None, types: MessageTypes | None = None):
    """A ``mono8`` Image (0 or 255) from an HxW bool mask, with the source frame's header."""
    return numpy_to_image(np.asarray(mask, dtype=bool), "mono8", header, types)


def image_to_mask(msg) -> np.ndarray:
    """An HxW bool mask (pixel > 0) from a ``mono8`` Image."""
    if msg.encoding not in ("mono8", "8UC1"):
        raise ImageConversionError(f"a mask must be mono8, got {msg.encoding!r}")
    return image_to_numpy(msg) > 0


def image_to_depth_m(msg) -> np.ndarray:
    """HxW float32 depth in metres from ``16UC1`` (mm) or ``32FC1`` (m); invalid values -> NaN."""
    if msg.encoding not in _DEPTH:
        raise ImageConversionError(f"depth must be 16UC1 (mm) or 32FC1 (m), got {msg.encoding!r}")
    arr = image_to_numpy(msg)
    if msg.encoding == "16UC1":
        depth = arr.astype(np.float32) / np.float32(1000.0)
        depth[arr == 0] = np.nan
        return depth
    depth = arr.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def compressed_to_rgb(msg) -> np.ndarray:
    """HxWx3 uint8 RGB from a ``sensor_msgs/CompressedImage`` (jpeg/png)."""
    buf = np.frombuffer(msg.data, dtype=np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise ImageConversionError(
            f"compressed image (format={getattr(msg, 'format', '?')!r}, {buf.size} bytes) "
            "could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


_DEFAULT: list[MessageTypes] = []


def default_message_types() -> MessageTypes:
    if not _DEFAULT:
        _DEFAULT.append(rclpy_types())
    return _DEFAULT[0]
