"""Synthetic dataset writers: RefCOCO layout (pycocotools, lens-eval's and the training loader's
readers) and rosbag2 mcap bags with a ground-truth sidecar (rosbags reader), plus the CLI."""
import json
import pickle

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from lens_ros.data.masks import decode_rle
from lens_ros.evaluation.refcoco import load_split
from lens_ros.geometry import CameraIntrinsics
from lens_ros.conversions.image import image_to_depth_m, image_to_rgb
from lens_ros.synthetic import SceneConfig, make_scene, make_sequence, make_split_scene
from lens_ros.synthetic.bag import (COMMAND_TOPIC, DEPTH_TOPIC, IMAGE_TOPIC, INFO_TOPIC,
                                    read_ground_truth, write_scene_bag, write_sequence_bag)
from lens_ros.synthetic.cli import main
from lens_ros.synthetic.refcoco import REFS_FILE, export_refcoco
from lens_ros.data.sources import ReferSegSource
from lens_ros.data.safe_pickle import safe_load

# pycocotools 2.0.x vs numpy 2 copy-keyword notice, not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZES = {"train": 6, "val": 2, "test": 4}  # small: each scene is ~10 ms, the format is the point


@pytest.fixture(scope="module")
def refcoco(tmp_path_factory):
    root = tmp_path_factory.mktemp("refer_seg")
    return root, export_refcoco(root, "synthetic", SIZES, n_expressions=2)


def test_refcoco_export_reads_back_with_pycocotools(refcoco):
    root, folder = refcoco
    coco = COCO(str(folder / "instances.json"))
    refs = safe_load(folder / REFS_FILE)  # the restricted unpickler: plain types only
    assert len(refs) == 2 * sum(SIZES.values())
    by_split = {s: [r for r in refs if r["split"] == s] for s in SIZES}
    for split, n in SIZES.items():
        for i in range(n):
            scene = make_split_scene(split, i, n_expressions=2)
            scene_refs = [r for r in by_split[split] if r["file_name"] == f"{split}_{i:07d}.png"]
            assert [r["sentences"][0]["sent"] for r in scene_refs] == \
                [e.text for e in scene.expressions]
            img_id = scene_refs[0]["image_id"]
            png = cv2.cvtColor(cv2.imread(str(folder / "images" / scene_refs[0]["file_name"])),
                               cv2.COLOR_BGR2RGB)
            assert np.array_equal(png, scene.rgb)  # lossless
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
            assert len(anns) == len(scene.objects)
            for ann, obj in zip(anns, scene.objects):
                assert np.array_equal(coco.annToMask(ann).astype(bool), obj.mask)
                x1, y1, x2, y2 = obj.box
                assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            for r, e in zip(scene_refs, scene.expressions):
                assert coco.anns[r["ann_id"]]["image_id"] == img_id
                assert np.array_equal(coco.annToMask(coco.anns[r["ann_id"]]).astype(bool), e.mask)
                assert (r["level"], r["reasoning"], r["target"]) == \
                    (e.level, e.reasoning, e.target_name)
                assert r["sentences"][0]["tokens"] == e.text.split()
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} >= {"cube", "mug", "book"}


def test_refcoco_export_is_plain_pickle_and_never_overwritten(refcoco):
    root, folder = refcoco
    refs = pickle.loads((folder / REFS_FILE).read_bytes())
    ref = refs[0]
    assert set(ref) >= {"ref_id", "ann_id", "image_id", "split", "sentences", "file_name",
                        "category_id"}
    assert {type(v) for v in ref.values()} <= {int, str, list}
    with pytest.raises(FileExistsError, match="exists"):
        export_refcoco(root, "synthetic", SIZES)


def test_refcoco_export_loads_in_evaluator_and_training_loader(refcoco):
    root, folder = refcoco
    samples = load_split(root, "synthetic/test")  # lens-eval's reader, unchanged
    assert len(samples) == 2 * SIZES["test"]
    assert {s.level for s in samples} <= {"attribute", "spatial", "ordinal", "indirect"}
    assert all(s.image_path.is_file() for s in samples)
    scene = make_split_scene("test", 0, n_expressions=2)
    assert np.array_equal(samples[0].gt_mask() > 0, scene.expressions[0].mask)
    train = ReferSegSource(root, "synthetic", "train", split_by="unc",
                           image_dir=folder / "images", per="sentence")
    assert len(train) == 2 * SIZES["train"]
    item = train[0]
    first = make_split_scene("train", 0, n_expressions=2).expressions[0]
    assert item.question == first.text and np.array_equal(item.gt_mask, first.mask)
    assert item.gt_box == tuple(float(v) for v in first.box)


def _read_bag(path):
    from lens_ros.bag.io import InputBag

    out = {}
    with InputBag(path) as bag:
        for conn, t, raw in bag.messages():
            out.setdefault(conn.topic, []).append((t, bag.deserialize(raw, conn)))
    return out


def test_scene_bag_reads_back_with_rosbags(tmp_path):
    cfg = SceneConfig(width=80, height=60)
    scenes = [make_scene(np.random.default_rng(s), None, cfg, n_expressions=2) for s in range(2)]
    path = write_scene_bag(tmp_path / "bag", scenes, frames_per_scene=3, period=0.5)
    topics = _read_bag(path)
    assert [len(topics[t]) for t in (IMAGE_TOPIC, DEPTH_TOPIC, INFO_TOPIC, COMMAND_TOPIC)] == \
        [6, 6, 6, 4]
    for k, ((t, img), (_, depth), (_, info)) in enumerate(zip(
            topics[IMAGE_TOPIC], topics[DEPTH_TOPIC], topics[INFO_TOPIC])):
        scene = scenes[k // 3]
        assert img.encoding == "rgb8" and np.array_equal(image_to_rgb(img), scene.rgb)
        assert depth.encoding == "32FC1"
        assert np.array_equal(image_to_depth_m(depth), scene.depth, equal_nan=True)
        assert CameraIntrinsics.from_camera_info(info) == scene.intrinsics
        stamp = img.header.stamp.sec * 10**9 + img.header.stamp.nanosec
        assert stamp == t and depth.header.stamp == img.header.stamp == info.header.stamp
    commands = [m.data for _, m in topics[COMMAND_TOPIC]]
    assert commands == [e.text for s in scenes for e in s.expressions]
    gt = read_ground_truth(path)
    assert len(gt) == 6 * 2  # every frame answers its scene's two commands
    image_stamps = [t for t, _ in topics[IMAGE_TOPIC]]
    for rec in gt:
        scene = scenes[rec["scene"]]
        e = next(x for x in scene.expressions if x.text == rec["command"])
        assert rec["stamp_ns"] in image_stamps and rec["command_stamp_ns"] > image_stamps[0]
        assert np.array_equal(decode_rle(rec["gt_mask"]), e.mask)
        assert rec["gt_box"] == list(e.box) and rec["level"] == e.level
        assert np.allclose(rec["gt_point"], scene.objects[e.target].centre)


def test_sequence_bag_has_per_frame_ground_truth(tmp_path):
    seq = make_sequence(np.random.default_rng(1), 6, SceneConfig(width=80, height=60))
    path = write_sequence_bag(tmp_path / "seq", seq)
    topics = _read_bag(path)
    assert len(topics[IMAGE_TOPIC]) == 6 and [m.data for _, m in topics[COMMAND_TOPIC]] == \
        [seq.command]
    gt = read_ground_truth(path)
    assert [r["stamp_ns"] for r in gt] == [t for t, _ in topics[IMAGE_TOPIC]]
    for rec, mask, (_, img), frame in zip(gt, seq.masks, topics[IMAGE_TOPIC], seq.frames):
        assert np.array_equal(decode_rle(rec["gt_mask"]), mask)
        assert np.array_equal(image_to_rgb(img), frame.rgb)


def test_cli_writes_each_format_and_refuses_existing_output(tmp_path, capsys):
    assert main(["refcoco", "--out", str(tmp_path / "rs"), "--train", "2", "--val", "0",
                 "--test", "2", "--width", "64", "--height", "48"]) == 0
    inst = json.loads((tmp_path / "rs" / "synthetic" / "instances.json").read_text())
    assert {(im["width"], im["height"]) for im in inst["images"]} == {(64, 48)}
    assert main(["bag", "--out", str(tmp_path / "bag"), "--scenes", "2", "--width", "64",
                 "--height", "48", "--frames-per-scene", "2"]) == 0
    assert main(["sequence", "--out", str(tmp_path / "seq"), "--frames", "3", "--width", "64",
                 "--height", "48"]) == 0
    assert main(["preview", "--out", str(tmp_path / "p.png"), "--scenes", "2"]) == 0
    assert cv2.imread(str(tmp_path / "p.png")).shape[1] == 4 * 224  # 4 columns, 2 left blank
    assert main(["bag", "--out", str(tmp_path / "bag"), "--scenes", "1"]) == 2
    assert "exists" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("colour_count: 3\n")
    assert main(["preview", "--out", str(tmp_path / "q.png"), "--config",
                 str(tmp_path / "bad.yaml")]) == 2
