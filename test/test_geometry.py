"""lens_ros.geometry: mask -> box, depth decoding, and the robust 3D target against the synthetic
scenes' ground-truth centres (target: median error <= 2 % of the distance)."""
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from lens_ros.core import BadImageError, NoDepthError
from lens_ros.geometry import (CameraIntrinsics, backproject, depth_to_metres, erode_mask,
                               mask_to_box, metres_to_16uc1, project, target_3d)
from lens_ros.synthetic import make_scene

K = CameraIntrinsics(fx=100.0, fy=110.0, cx=31.5, cy=23.5, width=64, height=48)


@pytest.mark.parametrize("h, w", [(1, 1), (7, 13), (48, 64)])
def test_mask_to_box_matches_coco_bbox(h, w):
    rng = np.random.default_rng(h * w)
    mask = np.zeros((h, w), bool)
    mask[rng.integers(h), rng.integers(w)] = True
    mask |= rng.random((h, w)) > 0.8
    x1, y1, x2, y2 = mask_to_box(mask)
    bbox = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
    assert [x1, y1, x2 - x1, y2 - y1] == bbox.tolist()  # COCO [x, y, w, h] from the same mask


def test_mask_to_box_single_pixel_and_empty():
    mask = np.zeros((10, 10), bool)
    assert mask_to_box(mask) is None
    mask[5, 3] = True  # row 5, column 3
    assert mask_to_box(mask) == (3, 5, 4, 6)  # exclusive right/bottom edges
    with pytest.raises(BadImageError, match="HxW"):
        mask_to_box(np.zeros((2, 2, 3), bool))


def test_depth_to_metres_16uc1_and_32fc1():
    mm = np.array([[0, 1000], [1500, 65535]], np.uint16)
    m = depth_to_metres(mm)
    assert np.isnan(m[0, 0]) and m[0, 1] == pytest.approx(1.0) and m[1, 0] == pytest.approx(1.5)
    f = np.array([[np.nan, np.inf], [-1.0, 0.75]], np.float32)
    out = depth_to_metres(f, "32FC1")
    assert np.isnan(out[0]).all() and np.isnan(out[1, 0]) and out[1, 1] == pytest.approx(0.75)
    assert np.array_equal(metres_to_16uc1(out), np.array([[0, 0], [0, 750]], np.uint16))
    with pytest.raises(BadImageError, match="uint16"):
        depth_to_metres(f, "16UC1")
    with pytest.raises(BadImageError, match="not supported"):
        depth_to_metres(f, "rgb8")


def test_project_backproject_roundtrip_and_scaled_intrinsics():
    pts = np.array([[0.1, -0.05, 0.8], [-0.2, 0.1, 1.5]])
    uv = project(pts, K)
    assert np.allclose(backproject(uv[:, 0], uv[:, 1], pts[:, 2], K), pts)
    half = K.scaled(32, 24)  # the same ray hits the same relative position in the small image
    assert np.allclose((project(pts, half) + 0.5) * 2, uv + 0.5)


def test_intrinsics_from_camera_info_message():
    from lens_ros.bag.io import make_typestore

    ts = make_typestore()
    info = ts.types["sensor_msgs/msg/CameraInfo"](
        header=ts.types["std_msgs/msg/Header"](
            stamp=ts.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="cam"),
        height=48, width=64, distortion_model="plumb_bob", d=np.zeros(5),
        k=K.matrix.reshape(-1), r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0,
        binning_y=0, roi=ts.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    assert CameraIntrinsics.from_camera_info(info) == K
    with pytest.raises(BadImageError, match="calibrated"):
        CameraIntrinsics.from_matrix(np.zeros(9), 64, 48)


def test_erode_mask_shrinks_by_one_pixel_per_step():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    assert erode_mask(mask, 1).sum() == 9 and erode_mask(mask, 2).sum() == 1
    assert not erode_mask(mask, 3).any()


def _errors(scenes, encoding):
    errors = []
    for scene in scenes:
        depth = scene.depth if encoding == "32FC1" else metres_to_16uc1(scene.depth)
        for obj in scene.objects:
            point = target_3d(obj.mask, depth, scene.intrinsics, encoding=encoding).point
            errors.append(np.linalg.norm(point - obj.centre) / np.linalg.norm(obj.centre))
    return np.array(errors)


@pytest.fixture(scope="module")
def scenes():
    # 40 noisy scenes (~150 objects of every shape): depth noise, NaN holes, dropouts
    return [make_scene(np.random.default_rng(500 + s)) for s in range(40)]


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_target_point_within_2_percent_of_distance(scenes, encoding):
    errors = _errors(scenes, encoding)
    assert len(errors) > 100
    assert np.median(errors) <= 0.02, f"median relative error {np.median(errors):.4f}"
    assert np.percentile(errors, 90) <= 0.06


def test_target_point_ignores_invalid_depth(scenes):
    rng = np.random.default_rng(0)
    errors = []
    for scene in scenes[:10]:
        mm = metres_to_16uc1(scene.depth)
        mm[rng.random(mm.shape) < 0.4] = 0  # 40 % of the pixels lose their measurement
        for obj in scene.objects:
            point = target_3d(obj.mask, mm, scene.intrinsics).point
            errors.append(np.linalg.norm(point - obj.centre) / np.linalg.norm(obj.centre))
    assert np.median(errors) <= 0.02


def test_target_extent_is_object_sized(scenes):
    scene = scenes[0]
    for obj in scene.objects:
        t = target_3d(obj.mask, scene.depth, scene.intrinsics)
        width = 2 * obj.spec.footprint
        assert 0.3 * width < t.extent[0] < 1.5 * width
        assert t.n_valid <= t.n_mask and t.extent[2] >= 0


def test_no_valid_depth_raises_no_depth_error(scenes):
    scene = scenes[0]
    mask = scene.objects[0].mask
    with pytest.raises(NoDepthError, match="no valid depth"):
        target_3d(mask, np.zeros(mask.shape, np.uint16), scene.intrinsics)
    with pytest.raises(NoDepthError, match="no valid depth"):
        target_3d(mask, np.full(mask.shape, np.nan, np.float32), scene.intrinsics)
    with pytest.raises(NoDepthError, match="empty"):
        target_3d(np.zeros_like(mask), scene.depth, scene.intrinsics)


def test_mask_of_another_size_is_resampled_to_depth():
    depth = np.full((48, 64), 1.0, np.float32)
    mask = np.zeros((96, 128), bool)
    mask[40:56, 56:72] = True  # rows 20-27, columns 28-35 of the depth: centred on (cx, cy)
    t = target_3d(mask, depth, K, centre_offset=0.0)
    assert np.allclose(t.surface_point, [0.0, 0.0, 1.0], atol=1e-6)
