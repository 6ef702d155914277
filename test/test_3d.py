"""3D target of a result (``lens_ros.target3d.attach_target_3d``, the function the node calls
with ``enable_3d``) against the synthetic scenes' ground-truth 3D centres (target: median error
<= 2 % of the distance), and NO_DEPTH instead of a crash for missing or invalid depth."""
from types import SimpleNamespace

import numpy as np
import pytest

from lens_ros.core import Segmentation, Status
from lens_ros.geometry import mask_to_box, metres_to_16uc1
from lens_ros.synthetic import SceneConfig, make_split_scene
from lens_ros.target3d import attach_target_3d, intrinsics_for


def _camera_info(k):
    """A CameraInfo-shaped object (the node passes the rclpy message; same attributes)."""
    return SimpleNamespace(k=list(k.matrix.reshape(-1)), width=k.width, height=k.height)


def _result(mask, status=Status.OK):
    box = mask_to_box(mask)
    return Segmentation(command="the target", mask=mask, box=box, status=status)


@pytest.fixture(scope="module")
def scenes():
    # 160x120 (4:3, not the 112 px square the geometry was tuned on), noisy depth, occlusion
    return [make_split_scene("test", i, SceneConfig(width=160, height=120)) for i in range(40)]


def _relative_errors(scenes, depth_of, info_of):
    errors = []
    for scene in scenes:
        for obj in scene.objects:
            out = attach_target_3d(_result(obj.mask), depth_of(scene), info_of(scene))
            assert out.status == Status.OK, out.error
            assert out.point.shape == (3,) and out.extent.shape == (3,)
            errors.append(np.linalg.norm(out.point - obj.centre) / np.linalg.norm(obj.centre))
    return np.array(errors)


def test_median_error_within_2_percent_of_distance_32fc1(scenes):
    err = _relative_errors(scenes, lambda s: s.depth, lambda s: _camera_info(s.intrinsics))
    print(f"32FC1: {len(err)} objects, median {np.median(err):.2%}, p90 "
          f"{np.percentile(err, 90):.2%} of the distance")
    assert len(err) >= 100
    assert np.median(err) <= 0.02


def test_median_error_16uc1_and_half_resolution_depth(scenes):
    """uint16 millimetres, depth at half the colour resolution with the colour camera_info:
    the mask is resampled and the intrinsics scaled to the depth image."""
    err = _relative_errors(scenes, lambda s: metres_to_16uc1(s.depth)[::2, ::2],
                           lambda s: _camera_info(s.intrinsics))
    assert np.median(err) <= 0.02


def test_intrinsics_scaled_to_depth_size(scenes):
    k = scenes[0].intrinsics
    half = intrinsics_for(_camera_info(k), (k.height // 2, k.width // 2))
    assert half.fx == pytest.approx(k.fx / 2) and half.width == k.width // 2
    assert intrinsics_for(_camera_info(k), (k.height, k.width)) == k


@pytest.mark.parametrize("depth, why", [
    (np.full((120, 160), np.nan, np.float32), "no valid depth"),
    (np.zeros((120, 160), np.uint16), "no valid depth"),
    (np.full((120, 160), -1.0, np.float32), "no valid depth"),
    (np.zeros((120, 160, 3), np.uint8), "depth must be HxW"),
    (np.ones((120, 160), np.int32), "must be float metres"),
    (None, "no depth image"),
])
def test_invalid_depth_gives_no_depth_not_a_crash(scenes, depth, why):
    scene = scenes[0]
    mask = scene.objects[0].mask
    out = attach_target_3d(_result(mask), depth, _camera_info(scene.intrinsics))
    assert out.status == Status.NO_DEPTH and why in out.error
    assert out.point is None and out.extent is None
    assert np.array_equal(out.mask, mask) and out.box == mask_to_box(mask)  # segmentation kept
    assert out.ok  # NO_DEPTH still carries a valid mask


def test_empty_mask_missing_or_bad_camera_info_give_no_depth(scenes):
    scene = scenes[0]
    info = _camera_info(scene.intrinsics)
    empty = attach_target_3d(_result(np.zeros((120, 160), bool)), scene.depth, info)
    assert empty.status == Status.NO_DEPTH and "empty" in empty.error
    none = attach_target_3d(_result(scene.objects[0].mask), scene.depth, None)
    assert none.status == Status.NO_DEPTH and "camera_info" in none.error
    bad = SimpleNamespace(k=[0.0] * 9, width=160, height=120)  # uncalibrated camera
    out = attach_target_3d(_result(scene.objects[0].mask), scene.depth, bad)
    assert out.status == Status.NO_DEPTH and "focal" in out.error


def test_tracked_results_get_a_point_and_failures_pass_through(scenes):
    scene = scenes[1]
    info = _camera_info(scene.intrinsics)
    tracked = attach_target_3d(_result(scene.objects[0].mask, Status.TRACKED), scene.depth, info)
    assert tracked.status == Status.TRACKED and tracked.point is not None
    failed = Segmentation.failure("x", Status.BAD_COMMAND, "empty command", (120, 160))
    assert attach_target_3d(failed, scene.depth, info) is failed
