"""Attach the target's 3D point and extent to a result (what the node calls with ``enable_3d``).

The geometry is :func:`lens_ros.geometry.target_3d` (median depth over the eroded mask, invalid
depths ignored, pushed back to the object's centre); this module only decides what a result
becomes: a successful result (OK / TRACKED) gets ``point`` and ``extent`` in the camera optical
frame of the depth image, or status NO_DEPTH with the reason (mask and box kept) when there is
no depth, no camera_info, no valid depth under the mask, or malformed input. It never raises for
bad depth: one bad depth frame must not take the node down. Nothing here imports rclpy.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from lens_ros.core import BadImageError, NoDepthError, Segmentation, Status
from lens_ros.geometry import CameraIntrinsics, target_3d


def intrinsics_for(camera_info: Any, depth_shape: tuple[int, int]) -> CameraIntrinsics:
    """Intrinsics of the depth image: ``camera_info`` (a CameraInfo message, CameraIntrinsics or
    3x3 K) scaled to the depth size when it was calibrated at another resolution.

    Raises BadImageError for a K that is not 9 numbers or has non-positive focal lengths.
    """
    if isinstance(camera_info, CameraIntrinsics):
        k = camera_info
    elif hasattr(camera_info, "k"):
        k = CameraIntrinsics.from_camera_info(camera_info)
        if k.width <= 0 or k.height <= 0:  # width/height left at 0: assume the depth size
            k = dataclasses.replace(k, width=depth_shape[1], height=depth_shape[0])
    else:
        k = CameraIntrinsics.from_matrix(camera_info, depth_shape[1], depth_shape[0])
    if (k.height, k.width) != tuple(depth_shape):
        k = k.scaled(depth_shape[1], depth_shape[0])
    return k


def attach_target_3d(result: Segmentation, depth: np.ndarray | None, camera_info: Any,
                     encoding: str | None = None) -> Segmentation:
    """``result`` with ``point`` / ``extent`` set, or with status NO_DEPTH and the reason.

    Arguments:
      result (Segmentation): a result whose mask is in colour-image pixels; results that are
        not OK or TRACKED are returned unchanged.
      depth (np.ndarray | None): HxW depth aligned with the colour image (any resolution; the
        mask is resampled onto it): uint16 millimetres (16UC1) or float metres (32FC1);
        0 / NaN / inf are invalid. None = no depth received yet.
      camera_info: the depth image's CameraInfo (or CameraIntrinsics / 3x3 K); None = missing.
      encoding (str | None): the depth image's ROS encoding when known.
    Returns:
      A new Segmentation (the input is not modified).
    """
    if result.status not in (Status.OK, Status.TRACKED):
        return result
    if depth is None or camera_info is None:
        missing = "depth image" if depth is None else "camera_info"
        return no_depth(result, f"no {missing} received yet; check the depth and camera_info "
                                 "topics (enable_3d needs both)")
    try:
        depth = np.asarray(depth)
        shape = depth.shape[:2]
        target = target_3d(result.mask, depth, intrinsics_for(camera_info, shape),
                           encoding=encoding)
    except (NoDepthError, BadImageError) as err:
        return no_depth(result, str(err))
    return dataclasses.replace(result, point=target.point, extent=target.extent)


def no_depth(result: Segmentation, reason: str) -> Segmentation:
    """``result`` with status NO_DEPTH and ``reason`` (successful results only; mask kept)."""
    if result.status not in (Status.OK, Status.TRACKED):
        return result
    return dataclasses.replace(result, status=Status.NO_DEPTH, error=reason, point=None,
                               extent=None)
