"""``Segmentation`` <-> ``lens_ros/msg/LensResult``: the one result converter.

rclpy-free like :mod:`lens_ros.conversions.image`: it builds rclpy messages for the node and
rosbags messages for the bag tools through the same :class:`MessageTypes` bundle.
"""
from __future__ import annotations

import numpy as np

from lens_ros.core import Segmentation, Status, Timings
from lens_ros.conversions.image import (MessageTypes, default_message_types, image_to_mask,
                                           mask_to_image)


def segmentation_to_result(seg: Segmentation, header, types: MessageTypes | None = None,
                           source_stamp=None):
    """Build a LensResult from a Segmentation.

    Arguments:
      seg (Segmentation): mask HxW bool in input-image pixels (may be 0x0 for errors before the
        image size was known), box xyxy pixels or None.
      header: header of the source frame; copied to the result and to its mask.
      types (MessageTypes): rclpy classes when None, or ``rosbags_types(typestore)``.
      source_stamp: ``builtin_interfaces/Time`` of the last full LENS call (tracking); the
        header's stamp when None.
    """
    types = types or default_message_types()
    mask = np.asarray(seg.mask, dtype=bool)
    if mask.ndim != 2:  # no image size known (e.g. a command before any frame): a 0x0 mask
        mask = np.zeros((0, 0), dtype=bool)
    mask_msg = mask_to_image(mask, header, types)
    box = np.asarray(seg.box if seg.box is not None else (0.0, 0.0, 0.0, 0.0), dtype=np.float32)
    point = seg.point if seg.point is not None else np.zeros(3)
    extent = seg.extent if seg.extent is not None else np.zeros(3)
    return types.LensResult(
        header=header, command=seg.command, reasoning=seg.reasoning, answer=seg.answer,
        has_box=seg.box is not None, box=box, score=float(seg.score),
        object_score=float(seg.object_score), mask=mask_msg, status=int(seg.status),
        error=seg.error, truncated=bool(seg.truncated),
        generate_ms=float(seg.timings.generate_ms), mask_ms=float(seg.timings.mask_ms),
        total_ms=float(seg.timings.total_ms),
        source_stamp=source_stamp if source_stamp is not None else header.stamp,
        has_point=seg.point is not None,
        target_point=types.Point(x=float(point[0]), y=float(point[1]), z=float(point[2])),
        target_extent=types.Vector3(x=float(extent[0]), y=float(extent[1]), z=float(extent[2])))


def result_to_segmentation(msg) -> Segmentation:
    """Read a LensResult (rclpy or rosbags) back into a Segmentation (for tools and tests)."""
    mask = image_to_mask(msg.mask) if msg.mask.width and msg.mask.height \
        else np.zeros((0, 0), dtype=bool)
    return Segmentation(
        command=msg.command, mask=mask,
        box=tuple(float(v) for v in msg.box) if msg.has_box else None,
        score=float(msg.score), object_score=float(msg.object_score), reasoning=msg.reasoning,
        answer=msg.answer, status=Status(msg.status), error=msg.error,
        truncated=bool(msg.truncated),
        timings=Timings(generate_ms=float(msg.generate_ms), mask_ms=float(msg.mask_ms),
                        total_ms=float(msg.total_ms)),
        point=np.array([msg.target_point.x, msg.target_point.y, msg.target_point.z])
        if msg.has_point else None,
        extent=np.array([msg.target_extent.x, msg.target_extent.y, msg.target_extent.z])
        if msg.has_point else None)
