"""Training data: restricted unpickler, RefCOCO-layout loader, ReasonSeg loader, bad records."""
import json
import os
import pickle

import cv2
import numpy as np
import pytest

from lens_ros.data.sources import ItemDataset, ReasonSegSource, ReferSegSource, reason_seg_mask
from lens_ros.data.items import BadRecordError, SkipCounter, TrainItem, scale_box
from lens_ros.data.safe_pickle import UnsafePickleError, safe_load, safe_loads
from lens_ros.data.toydata import write_toy_refer_seg


class _RunsCode:
    """Pickles to a call of os.system, as a malicious dataset file would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_before_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}, _RunsCode(marker)], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        safe_load(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(eval, protocol=4),  # a builtin other than set/frozenset
    b"cbuiltins\nexec\n(S'x=1'\ntR.",  # protocol 0 exec call
    b"\x80\x02c__builtin__\neval\nq\x00.",  # Python 2 spelling
])
def test_any_non_container_global_is_refused(payload):
    with pytest.raises(UnsafePickleError):
        safe_loads(payload)


def test_plain_containers_load_like_pickle():
    data = [{"ref_id": 3, "sentences": [{"sent": "the red mug", "tokens": ["red"]}],
             "bbox": (1.5, 2, 3, 4), "flag": True, "none": None, "ids": {1, 2}, "b": b"\x00"}]
    for proto in (0, 2, 4, 5):
        assert safe_loads(pickle.dumps(data, protocol=proto)) == data


def test_corrupt_pickle_gives_clear_error():
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        safe_loads(b"\x80\x02]q\x00(K\x01")


def test_refcoco_loader_items_match_the_fixture(tmp_path):
    root = write_toy_refer_seg(tmp_path, n_images=3, size=(40, 56))
    src = ReferSegSource(root, "refcoco", per="sentence")
    refs = pickle.loads((root / "refcoco/refs(unc).p").read_bytes())
    inst = json.loads((root / "refcoco/instances.json").read_text())
    train = [r for r in refs if r["split"] == "train"]
    assert len(src) == 2 * len(train)  # two sentences per ref
    for i in range(len(src)):
        item = src[i]
        ref = train[i // 2]
        ann = next(a for a in inst["annotations"] if a["id"] == ref["ann_id"])
        assert item.question == ref["sentences"][i % 2]["sent"]
        assert item.image.shape == (40, 56, 3) and item.image.dtype == np.uint8
        assert item.gt_mask.dtype == bool and item.gt_mask.sum() > 0
        x, y, w, h = ann["bbox"]
        assert item.gt_box == (x, y, x + w, y + h)
        ys, xs = np.nonzero(item.gt_mask)  # the decoded mask lies in its box
        assert xs.min() >= x - 1 and xs.max() <= x + w and ys.min() >= y - 1 and ys.max() <= y + h


def test_per_ref_sentence_draw_is_deterministic_and_changes_with_epoch(tmp_path):
    root = write_toy_refer_seg(tmp_path, n_images=4)
    src = ReferSegSource(root, "refcoco", per="ref", seed=3)
    assert len(src) == 8
    first = [src[i].question for i in range(len(src))]
    assert first == [src[i].question for i in range(len(src))]  # same index, same sentence
    draws = set()
    for epoch in range(6):
        src.set_epoch(epoch)
        draws.add(tuple(src[i].question for i in range(len(src))))
    assert len(draws) > 1


def test_bad_records_are_skipped_and_counted(tmp_path):
    root = write_toy_refer_seg(tmp_path, n_images=2, bad_records=True)
    skips = SkipCounter()
    src = ReferSegSource(root, "refcoco", per="ref", skips=skips)
    # empty segmentation and zero-width box are dropped while indexing
    assert skips.as_dict() == {"empty_mask": 1, "degenerate_box": 1}
    ds = ItemDataset([src], skips=skips)
    items = [ds[i] for i in range(len(ds))]  # the missing image is skipped, never raised
    assert all(isinstance(it, TrainItem) and it.gt_mask.any() for it in items)
    assert skips.counts["missing_image"] >= 1
    assert all("bad record" != it.question for it in items)


def test_item_validation_rejects_bad_geometry():
    img = np.zeros((10, 12, 3), np.uint8)
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:6] = True
    TrainItem(img, "x", mask, (3, 2, 6, 5), id="ok").validate()
    with pytest.raises(BadRecordError) as err:
        TrainItem(img, "x", np.zeros((10, 12), bool), (3, 2, 6, 5)).validate()
    assert err.value.reason == "empty_mask"
    with pytest.raises(BadRecordError) as err:
        TrainItem(img, "x", mask, (6, 2, 3, 5)).validate()
    assert err.value.reason == "degenerate_box"
    with pytest.raises(BadRecordError) as err:
        TrainItem(img, "x", mask[:5], (3, 2, 6, 5)).validate()
    assert err.value.reason == "bad_mask"


def test_scale_box_maps_to_the_resized_image():
    # COCO 640x480 -> smart-resized 644x476 (W' x H'), rounded as the reference's solution
    assert scale_box((100, 50, 300, 250), (480, 640), (476, 644)) == [101.0, 50.0, 302.0, 248.0]
    assert scale_box((10, 10, 20, 20), (100, 100), (50, 200), round_to_int=False) == [
        20.0, 5.0, 40.0, 10.0]


def _write_reasonseg(tmp_path):
    d = tmp_path / "ReasonSeg/train"
    d.mkdir(parents=True)
    img = np.full((40, 50, 3), 200, np.uint8)
    cv2.imwrite(str(d / "a.jpg"), img)
    (d / "a.json").write_text(json.dumps({
        "text": ["the thing you sit on", "a seat"], "is_sentence": True,
        "shapes": [{"label": "target", "points": [[10, 5], [30, 5], [30, 25], [10, 25]]},
                   {"label": "ignore", "points": [[12, 8], [16, 8], [16, 12], [12, 12]]},
                   {"label": "flag", "points": [[0, 0], [49, 0], [49, 39]]}]}))
    cv2.imwrite(str(d / "b.jpg"), img)
    (d / "b.json").write_text(json.dumps({"text": ["nothing"], "shapes": []}))
    return d


def test_reasonseg_mask_follows_the_reference_drawing(tmp_path):
    d = _write_reasonseg(tmp_path)
    label = reason_seg_mask(json.loads((d / "a.json").read_text())["shapes"], 40, 50)
    assert label[15, 20] == 1 and label[10, 14] == 255 and label[35, 45] == 0  # flag skipped
    skips = SkipCounter()
    ds = ItemDataset([ReasonSegSource(d, per="sentence")], skips=skips)
    assert len(ds) == 3
    item = ds[0]
    assert item.question == "the thing you sit on"
    assert not item.gt_mask[10, 14]  # ignore region is background for training
    assert item.gt_box == (10.0, 5.0, 30.0, 25.0)
    assert ds[2].id == ds[0].id  # b.jpg has an empty mask: skipped, wraps to the next valid one
    assert skips.counts["empty_mask"] == 1
