"""Pure-numpy geometry: mask -> box, and aligned depth + camera intrinsics -> a robust 3D target.

Frames and units used throughout:
  * pixels: ``(u, v)`` = (column, row); integer coordinates are pixel *centres*, so pixel ``u``
    covers ``[u - 0.5, u + 0.5)``. ROS ``CameraInfo`` uses the same convention.
  * boxes: ``(x1, y1, x2, y2)`` with exclusive right/bottom edges (COCO: ``x2 = x + w``), so a
    mask whose only pixel is (3, 5) has the box (3, 5, 4, 6). This matches the COCO ``bbox``
    ``[x, y, w, h]`` that pycocotools computes from the same mask, and LENS' ``[x, y, x+w, y+h]``.
  * 3D points: the camera *optical* frame (REP 103 ``*_optical_frame``): x right, y down,
    z forward along the optical axis, metres. ``z`` is the value a depth image holds.
  * depth images: ``16UC1``/``mono16`` uint16 millimetres or ``32FC1`` float32 metres; 0, NaN and
    +-inf are "no measurement" (REP 118).

Nothing here imports torch or rclpy; the node converts messages to numpy before calling in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lens_ros.core import BadImageError, NoDepthError

#: depth encodings understood by :func:`depth_to_metres`, with their scale to metres
DEPTH_ENCODINGS = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an undistorted (or rectified) image, as in ``CameraInfo.k``.

    Attributes:
      fx, fy (float): focal lengths in pixels.
      cx, cy (float): principal point in pixels (pixel-centre convention, see module doc).
      width, height (int): image size in pixels the intrinsics belong to.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def matrix(self) -> np.ndarray:
        """3x3 float64 camera matrix K (row-major, as ``CameraInfo.k``)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_camera_info(cls, info: Any) -> "CameraIntrinsics":
        """Read ``k``, ``width`` and ``height`` of a ``sensor_msgs/CameraInfo`` (rclpy or rosbags).

        Raises:
          BadImageError: when ``k`` is not 9 numbers or the focal lengths are not positive.
        """
        k = np.asarray(getattr(info, "k", None), dtype=np.float64).reshape(-1)
        return cls.from_matrix(k, int(info.width), int(info.height))

    @classmethod
    def from_matrix(cls, k: Any, width: int, height: int) -> "CameraIntrinsics":
        """Build from a 3x3 matrix or its 9 row-major numbers (``CameraInfo.k``)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise BadImageError(f"camera matrix must have 9 numbers (3x3), got {k.size}")
        if not (k[0] > 0 and k[4] > 0):
            raise BadImageError(f"camera_info has non-positive focal lengths fx={k[0]}, "
                                f"fy={k[4]}; is the camera calibrated (k all zeros)?")
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))

    def scaled(self, width: int, height: int) -> "CameraIntrinsics":
        """Intrinsics of the same camera after resizing the image to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        # pixel centres: u' + 0.5 = (u + 0.5) * s
        return CameraIntrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                                (self.cy + 0.5) * sy - 0.5, int(width), int(height))


@dataclass
class Target3D:
    """A target's 3D estimate in the camera optical frame (metres).

    Attributes:
      point (np.ndarray): (3,) float64 estimated object centre: ``surface_point`` pushed back
        along its viewing ray by ``centre_offset`` x the object's width (0 gives the surface).
      surface_point (np.ndarray): (3,) float64 the mask centroid back-projected at the median
        valid depth under the eroded mask (a point on the visible surface).
      extent (np.ndarray): (3,) float64 size along camera x, y (mask box at the median depth) and z
        (5th-95th percentile range of the visible depths, a lower bound of the object's depth).
      n_valid (int): mask pixels (after erosion) that had a valid depth.
      n_mask (int): mask pixels (after erosion) considered.
    """

    point: np.ndarray
    surface_point: np.ndarray
    extent: np.ndarray
    n_valid: int
    n_mask: int


def mask_to_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box of a mask: ``(x1, y1, x2, y2)`` int pixels, x2/y2 exclusive; None if empty.

    Arguments:
      mask (np.ndarray): HxW, nonzero/True on the object.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise BadImageError(f"mask must be HxW, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def depth_to_metres(depth: np.ndarray, encoding: str | None = None) -> np.ndarray:
    """HxW depth in metres as float32, with NaN wherever there is no measurement.

    Arguments:
      depth (np.ndarray): HxW uint16 millimetres (``16UC1``/``mono16``) or float32/float64 metres
        (``32FC1``); 0, NaN and +-inf mean "no measurement".
      encoding (str | None): the ROS encoding, when known; otherwise the dtype decides.

    Raises:
      BadImageError: wrong number of dimensions, or a dtype/encoding that is not a depth format.
    """
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise BadImageError(f"depth must be HxW, got shape {depth.shape}")
    if encoding is None:
        encoding = "16UC1" if depth.dtype == np.uint16 else "32FC1"
    if encoding not in DEPTH_ENCODINGS:
        raise BadImageError(f"depth encoding {encoding!r} is not supported; "
                            f"use one of {sorted(DEPTH_ENCODINGS)}")
    if encoding == "32FC1" and depth.dtype.kind != "f":
        raise BadImageError(f"32FC1 depth must be float metres, got dtype {depth.dtype}")
    if encoding != "32FC1" and depth.dtype != np.uint16:
        raise BadImageError(f"{encoding} depth must be uint16 millimetres, got {depth.dtype}")
    out = depth.astype(np.float32) * np.float32(DEPTH_ENCODINGS[encoding])
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def metres_to_16uc1(depth_m: np.ndarray) -> np.ndarray:
    """float metres (NaN/<=0 invalid) -> uint16 millimetres (0 invalid, clipped at 65.535 m)."""
    d = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(d) & (d > 0)
    mm = np.zeros(d.shape, dtype=np.uint16)
    mm[valid] = np.clip(np.rint(d[valid] * 1000.0), 1, 65535).astype(np.uint16)
    return mm


def erode_mask(mask: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Binary erosion by a 3x3 square, ``pixels`` times; pixels outside the image count as off."""
    out = np.asarray(mask, dtype=bool)
    for _ in range(max(int(pixels), 0)):
        p = np.pad(out, 1, constant_values=False)
        out = (p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
               & p[:-2, :-2] & p[:-2, 2:] & p[2:, :-2] & p[2:, 2:])
    return out


def backproject(u: np.ndarray, v: np.ndarray, z: np.ndarray,
                intrinsics: CameraIntrinsics) -> np.ndarray:
    """Pixels (u, v) with depth z (metres) -> Nx3 points in the camera optical frame."""
    z = np.asarray(z, dtype=np.float64)
    x = (np.asarray(u, dtype=np.float64) - intrinsics.cx) * z / intrinsics.fx
    y = (np.asarray(v, dtype=np.float64) - intrinsics.cy) * z / intrinsics.fy
    return np.stack([x, y, z], axis=-1)


def project(points: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """Nx3 optical-frame points (z > 0) -> Nx2 float pixel coordinates (u, v)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return np.stack([intrinsics.fx * p[:, 0] / p[:, 2] + intrinsics.cx,
                     intrinsics.fy * p[:, 1] / p[:, 2] + intrinsics.cy], axis=-1)


def _as_intrinsics(intrinsics: Any, shape: tuple[int, int]) -> CameraIntrinsics:
    if isinstance(intrinsics, CameraIntrinsics):
        return intrinsics
    if hasattr(intrinsics, "k"):
        return CameraIntrinsics.from_camera_info(intrinsics)
    return CameraIntrinsics.from_matrix(intrinsics, shape[1], shape[0])


def target_3d(mask: np.ndarray, depth: np.ndarray, intrinsics: Any, *, erode_px: int = 2,
              centre_offset: float = 0.4, encoding: str | None = None) -> Target3D:
    """Robust 3D position and extent of a segmented object from an aligned depth image.

    The mask is eroded by ``erode_px`` pixels (depth at object borders mixes object and
    background; if no valid depth survives erosion the whole mask is used), invalid depths are
    ignored, and the median of the remaining depths, placed at the mask's centroid, gives a
    point on the visible surface. The visible surface lies in front of the object's centre, so
    that point is pushed back along its viewing ray by ``centre_offset`` x the object's width;
    0.4 suits objects about as deep as they are wide. Measured on 533 objects of 150 synthetic
    scenes (112 px, noisy depth, partial occlusion): median error 1.1 % of the distance (cubes,
    balls, mugs, cups, bottles, cylinders ~1 %; flat books and bowls ~3.5 %, cones ~4 %; 90th
    percentile 4.3 %, worst 7 %).

    Arguments:
      mask (np.ndarray): HxW bool target mask, aligned with ``depth`` (same shape; a mask of
        another size is resampled to the depth image by nearest neighbour).
      depth (np.ndarray): HxW uint16 millimetres (16UC1) or float32 metres (32FC1).
      intrinsics: :class:`CameraIntrinsics`, a ``CameraInfo`` message or a 3x3/9-element K of
        the depth image.
      erode_px (int): erosion radius in pixels before taking depths.
      centre_offset (float): surface -> centre push-back as a fraction of the object's width.
      encoding (str | None): ROS encoding of ``depth`` when known (else the dtype decides).

    Returns:
      Target3D in the camera optical frame (metres).

    Raises:
      NoDepthError: the mask is empty or no pixel under it has a valid depth.
      BadImageError: malformed depth or intrinsics.
    """
    depth_m = depth_to_metres(depth, encoding)
    h, w = depth_m.shape
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise BadImageError(f"mask must be HxW, got shape {mask.shape}")
    if mask.shape != (h, w):  # nearest-neighbour resample onto the depth grid
        rows = (np.arange(h) * mask.shape[0] // h).clip(0, mask.shape[0] - 1)
        cols = (np.arange(w) * mask.shape[1] // w).clip(0, mask.shape[1] - 1)
        mask = mask[rows[:, None], cols[None, :]]
    if not mask.any():
        raise NoDepthError("the target mask is empty, so there is no depth to read")
    k = _as_intrinsics(intrinsics, (h, w))
    core = erode_mask(mask, erode_px)
    valid = core & np.isfinite(depth_m)
    if not valid.any():  # a thin or hole-ridden object: take the border pixels too
        core = mask
        valid = core & np.isfinite(depth_m)
    n_valid, n_mask = int(valid.sum()), int(core.sum())
    if n_valid == 0:
        raise NoDepthError(f"no valid depth under the mask: 0 of {n_mask} pixels have a "
                           f"finite depth > 0; check that depth is aligned with the colour image")
    z_valid = depth_m[valid].astype(np.float64)
    z_med = float(np.median(z_valid))
    rows, cols = np.nonzero(mask)
    surface = backproject(cols.mean(), rows.mean(), z_med, k)  # mask centroid at median depth
    x1, y1, x2, y2 = mask_to_box(mask)
    z_lo, z_hi = np.percentile(z_valid, [5, 95])
    extent = np.array([(x2 - x1) * z_med / k.fx, (y2 - y1) * z_med / k.fy, z_hi - z_lo])
    ray = surface / np.linalg.norm(surface)
    point = surface + ray * (centre_offset * extent[0])
    return Target3D(point=point, surface_point=surface, extent=extent, n_valid=n_valid,
                    n_mask=n_mask)
