"""One image message of a bag -> (header, HxWx3 uint8 RGB), keeping the header of bad frames.

A frame whose pixels cannot be decoded (truncated data, 0x0, unknown encoding, bad step,
garbage JPEG) or whose CDR is cut short still has a source header for its record: the
message's own, or for a damaged CDR the stamp and frame_id read by hand from its first bytes.
"""
from __future__ import annotations

import struct

import numpy as np

from lens_ros.bag.io import COMPRESSED_IMAGE, InputBag
from lens_ros.conversions.image import compressed_to_rgb, image_to_rgb
from lens_ros.core import BadImageError


def decode_frame(bag: InputBag, conn, raw: bytes) -> tuple[object, np.ndarray]:
    """(header, HxWx3 uint8 RGB) of one image message.

    Raises:
      BadImageError: the CDR cannot be deserialized or the image cannot be decoded; its
        ``header`` attribute holds the message's header whenever that much could be read.
    """
    try:
        msg = bag.deserialize(raw, conn)
    except Exception as err:  # SerdeError, or struct/index errors of a truncated CDR
        bad = BadImageError(f"message on {conn.topic} could not be deserialized "
                            f"({type(err).__name__}: {err}); the bag is damaged at this frame")
        bad.header = _cdr_header(raw)
        raise bad from err
    try:
        rgb = compressed_to_rgb(msg) if conn.msgtype == COMPRESSED_IMAGE else image_to_rgb(msg)
    except BadImageError as err:
        err.header = msg.header
        raise
    return msg.header, rgb


def _cdr_header(raw: bytes) -> tuple[int, str] | None:
    """(stamp ns, frame_id) read by hand from the start of a (possibly truncated) CDR message
    whose first field is a ``std_msgs/Header``; None when even that is cut off."""
    try:
        little = raw[1] == 1  # encapsulation CDR_LE (0x0001) or CDR_BE (0x0000)
        order = "<" if little else ">"
        sec, nanosec, n = struct.unpack_from(f"{order}iII", raw, 4)
        frame_id = bytes(raw[16:16 + n]).split(b"\0", 1)[0].decode("utf-8", "replace")
        if 16 + n > len(raw):
            return None
        return sec * 1_000_000_000 + nanosec, frame_id
    except (struct.error, IndexError):
        return None
