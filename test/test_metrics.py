"""Metrics on hand-made masks with exact expected values, and agreement with the reference's
``intersectionAndUnionGPU`` (torch.histc) on random masks."""
import numpy as np
import pytest

from lens_ros.data.masks import decode_annotation, decode_rle, encode_rle
from lens_ros.evaluation.metrics import (box_accuracy, box_iou, ciou, giou, intersection_union,
                                         precision_at, sentence_iou, summarize)


def _mask(h, w, *rects, value=1, dtype=np.uint8):
    m = np.zeros((h, w), dtype=dtype)
    for y1, y2, x1, x2 in rects:
        m[y1:y2, x1:x2] = value
    return m


def test_intersection_union_counts_pixels():
    pred = _mask(4, 4, (0, 1, 0, 3)).astype(bool)  # 3 px on row 0
    gt = _mask(4, 4, (0, 2, 1, 3))  # 4 px: rows 0-1, cols 1-2; overlap = 2 px
    assert intersection_union(pred, gt) == (2, 5)
    assert sentence_iou(2, 5) == 0.4


def test_ignore_index_pixels_are_not_scored():
    pred = np.ones((2, 3), dtype=bool)
    gt = np.array([[1, 0, 255], [255, 255, 1]], dtype=np.uint8)
    # valid pixels: 3; pred there 3, gt fg 2, I = 2 -> U = 3 + 2 - 2 = 3
    assert intersection_union(pred, gt) == (2, 3)


def test_overlap_value_two_is_neither_target_nor_ignored():
    """The reference sums annotation parts; a pixel of value 2 is outside histc's [0, 1]."""
    pred = np.array([[1, 1, 0]], dtype=bool)
    gt = np.array([[1, 2, 2]], dtype=np.uint8)
    assert intersection_union(pred, gt) == (1, 2)  # pred on the 2 counts only in the union


def test_empty_union_scores_one_and_empty_gt_with_prediction_scores_zero():
    empty = np.zeros((3, 3), dtype=np.uint8)
    assert intersection_union(empty.astype(bool), empty) == (0, 0)
    assert sentence_iou(0, 0) == 1.0
    i, u = intersection_union(np.ones((3, 3), bool), empty)
    assert (i, u, sentence_iou(i, u)) == (0, 9, 0.0)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(3, 3\)"):
        intersection_union(np.zeros((2, 2), bool), np.zeros((3, 3), np.uint8))


def test_ciou_sums_over_sentences_and_giou_averages_them():
    inter, union = [2, 0, 3], [5, 0, 4]
    assert ciou(inter, union) == 5 / 9
    ious = [sentence_iou(i, u) for i, u in zip(inter, union)]
    assert ious == [0.4, 1.0, 0.75]
    assert giou(ious) == pytest.approx((0.4 + 1.0 + 0.75) / 3, abs=1e-15)


def test_empty_split_gives_zero():
    assert ciou([], []) == 0.0
    assert ciou([0, 0], [0, 0]) == 0.0
    assert giou([]) == 0.0
    assert precision_at([], 0.5) == 0.0


def test_precision_counts_iou_at_or_above_threshold():
    ious = [0.4, 1.0, 0.75, 0.5]
    assert precision_at(ious, 0.5) == 0.75  # 0.5 itself counts
    assert precision_at(ious, 0.7) == 0.5
    assert precision_at(ious, 0.9) == 0.25


def test_box_iou_exact_values():
    assert box_iou([0, 0, 10, 10], [5, 5, 15, 15]) == 25 / 175
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching, no +1 convention
    assert box_iou(None, [0, 0, 1, 1]) == 0.0
    assert box_iou([5, 5, 0, 0], [0, 0, 5, 5]) == 0.0  # inverted box has no area
    assert box_iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0  # empty union
    assert box_accuracy([0.5, 0.49, 0.9, 0.0]) == 0.5


def test_summarize_reports_every_metric():
    m = summarize([2, 0, 3], [5, 0, 4], [0.6, 0.2, 0.5])
    assert m == {"n": 3, "ciou": 5 / 9, "giou": pytest.approx(2.15 / 3), "p@0.5": 2 / 3,
                 "p@0.7": 2 / 3, "p@0.9": 1 / 3, "box_acc@0.5": 2 / 3,
                 "box_iou": pytest.approx(1.3 / 3)}
    with pytest.raises(ValueError, match="one value per sentence"):
        summarize([1], [1, 2])


def _reference_iu(pred: np.ndarray, gt: np.ndarray):
    """``eval/utils.py`` ``intersectionAndUnionGPU(output, target, K=2, ignore_index=255)``."""
    torch = pytest.importorskip("torch")
    output = torch.from_numpy(pred.astype(np.int64)).view(-1).clone()
    target = torch.from_numpy(gt.astype(np.int64)).view(-1)
    output[target == 255] = 255
    inter = output[output == target]
    a_i = torch.histc(inter.float(), bins=2, min=0, max=1)
    a_o = torch.histc(output.float(), bins=2, min=0, max=1)
    a_t = torch.histc(target.float(), bins=2, min=0, max=1)
    return int(a_i[1]), int((a_o + a_t - a_i)[1])


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_reference_histc(seed):
    rng = np.random.default_rng(seed)
    pred = rng.random((23, 17)) > 0.5
    values = np.array([0, 1, 2, 255], dtype=np.uint8)
    gt = rng.choice(values, size=(23, 17), p=[0.4, 0.4, 0.1, 0.1])
    assert intersection_union(pred, gt) == _reference_iu(pred, gt)


@pytest.mark.parametrize("h, w", [(1, 1), (7, 13), (120, 160)])
def test_rle_roundtrip(h, w):
    mask = np.random.default_rng(0).random((h, w)) > 0.5
    rle = encode_rle(mask)
    assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
    assert np.array_equal(decode_rle(rle), mask)


def test_decode_annotation_sums_parts_without_clamp():
    # two 4x4 squares (as RLE parts) overlapping in a 2x2 block, then one polygon [x, y, ...]
    a = encode_rle(_mask(10, 10, (0, 4, 0, 4)).astype(bool))
    b = encode_rle(_mask(10, 10, (2, 6, 2, 6)).astype(bool))
    gt = decode_annotation([a, b], 10, 10)
    assert gt.dtype == np.uint8 and gt.max() == 2
    assert np.count_nonzero(gt == 2) == 4 and np.count_nonzero(gt == 1) == 24
    poly = decode_annotation([[1.0, 1.0, 5.0, 1.0, 5.0, 4.0, 1.0, 4.0]], 8, 8)
    assert poly.shape == (8, 8) and set(np.unique(poly)) == {0, 1}
    assert decode_annotation([], 3, 2).shape == (3, 2)


def test_paired_bootstrap_separates_a_real_gain_from_noise():
    from lens_ros.evaluation.metrics import paired_bootstrap

    rng = np.random.default_rng(1)
    before = [{"ref_id": i, "sent_index": 0, "intersection": 50.0, "union": 100.0,
               "box_iou": float(rng.random())} for i in range(200)]
    better = [dict(r, intersection=70.0, box_iou=min(1.0, r["box_iou"] + 0.3)) for r in before]
    d = paired_bootstrap(before, better, "ciou", resamples=200)
    assert d["n"] == 200 and d["delta"] == pytest.approx(0.2) and d["low"] > 0.19
    d = paired_bootstrap(before, better, "box_acc@0.5", resamples=200)
    assert d["delta"] > 0 and d["low"] > 0
    same = paired_bootstrap(before, before, "box_acc@0.5", resamples=50)
    assert same["delta"] == 0 and same["low"] == same["high"] == 0
    # a coin-flip change: the interval straddles 0
    noisy = [dict(r, box_iou=float(rng.random())) for r in before]
    d = paired_bootstrap(before, noisy, "box_acc@0.5", resamples=300)
    assert d["low"] < 0 < d["high"]
    # only sentences present in both runs count
    assert paired_bootstrap(before[:10], better[5:], "ciou", resamples=10)["n"] == 5
    assert paired_bootstrap([], better, "ciou")["n"] == 0
