"""SAM 2 memory tracking (``lens_ros.model.tracking``) on the tiny preset: the mechanism.

These tests use random weights, so they check the mechanism, not tracking quality: that the
Tracker computes exactly what the ``sam2`` package's own video model (``SAM2Base.track_step``
over an unbounded memory bank) computes, that its memory stays bounded on endless streams,
its errors, results and weight files. Tracking quality with trained weights is
test_tracking_quality.py.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lens_ros.core import BadImageError, CheckpointError, NotReadyError, Segmentation, Status
from lens_ros.geometry import mask_to_box
from lens_ros.model import LensSegmenter
from lens_ros.model.processing import prepare_sam_image
from lens_ros.model.sam import build_sam
from lens_ros.model.tracking import Tracker, TrackerConfig, TrackingError
from lens_ros.model.tracking_weights import (TRACKER_WEIGHTS, head_sam_config, main,
                                             save_tracking_head)
from lens_ros.synthetic import SceneConfig, make_sequence

N_FRAMES = 18  # > max_obj_ptrs (16): the bounded bank must drop outputs without changing results


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir):
    return LensSegmenter.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def sequence():
    return make_sequence(np.random.default_rng(3), N_FRAMES, SceneConfig(width=96, height=80),
                         n_moving_distractors=1)


@pytest.fixture(scope="module")
def tracker(segmenter):
    return Tracker.untrained(segmenter, seed=1)


@pytest.fixture(scope="module")
def tracked(tracker, sequence):
    source = Segmentation(command="the cube", mask=sequence.masks[0], reasoning="it is red",
                          answer="<answer>...</answer>")
    tracker.start(sequence.frames[0].rgb, sequence.masks[0], source=source)
    results = [tracker.track(f.rgb) for f in sequence.frames[1:]]
    return results, tracker.memory_frames()


@torch.inference_mode()
def _sam2_reference(segmenter, tracker, sequence):
    """SAM 2's own video model with the same weights: SAM2Base.forward_image + track_step."""
    model = segmenter.model
    cfg = head_sam_config(model.lens_config.sam)
    full = build_sam(cfg)
    full.image_encoder.load_state_dict(model.sam.image_encoder.state_dict())
    missing, unexpected = full.load_state_dict(tracker.head.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("image_encoder.") for k in missing)
    proc = model.lens_config.processing
    bank = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    masks, scores = [], []
    for i, frame in enumerate(sequence.frames):
        px = prepare_sam_image(frame.rgb, cfg.image_size, proc.sam_pixel_mean, proc.sam_pixel_std)
        _, feats, pos, sizes = full._prepare_backbone_features(full.forward_image(px))
        if i == 0:  # SAM2VideoPredictor.add_new_mask
            m = torch.from_numpy(sequence.masks[0].astype(np.float32))[None, None]
            m = F.interpolate(m, size=(cfg.image_size,) * 2, mode="bilinear",
                              align_corners=False, antialias=True)
            out = full.track_step(0, True, feats, pos, sizes, None, (m >= 0.5).float(), bank,
                                  N_FRAMES)
            bank["cond_frame_outputs"][0] = out
            continue
        out = full.track_step(i, False, feats, pos, sizes, None, None, bank, N_FRAMES)
        bank["non_cond_frame_outputs"][i] = out
        logits = F.interpolate(out["pred_masks"], size=frame.rgb.shape[:2], mode="bilinear",
                               align_corners=False)
        masks.append(logits[0, 0].numpy() > 0)
        scores.append(float(out["object_score_logits"]))
    return masks, scores


def test_tracker_equals_sam2_video_model(segmenter, tracker, sequence, tracked):
    results, _ = tracked
    masks, scores = _sam2_reference(segmenter, tracker, sequence)
    assert len(results) == len(masks) == N_FRAMES - 1
    for r, m, s in zip(results, masks, scores):
        assert r.object_score == pytest.approx(s, abs=1e-4)
        assert (r.mask != m).mean() < 1e-3  # identical up to float rounding at the threshold


def test_memory_bank_stays_bounded(tracker, tracked):
    _, kept = tracked
    keep = max(tracker.head.num_maskmem - 1, tracker.config.max_obj_ptrs - 1)
    assert kept == list(range(N_FRAMES - keep, N_FRAMES))
    assert tracker.frames_tracked == N_FRAMES - 1


def test_results_are_tracked_segmentations(tracked, sequence):
    results, _ = tracked
    for r, frame in zip(results, sequence.frames[1:]):
        assert r.status in (Status.TRACKED, Status.NO_TARGET)
        assert r.mask.shape == frame.rgb.shape[:2] and r.mask.dtype == bool
        box = mask_to_box(r.mask)
        assert r.box == (tuple(float(v) for v in box) if box is not None else None)
        assert r.command == "the cube" and r.reasoning == "it is red"
        assert 0.0 <= r.score <= 1.0 and np.isfinite(r.object_score)
        assert r.timings.total_ms > 0


def test_low_object_score_reports_no_target(segmenter, sequence):
    tr = Tracker.untrained(segmenter, config=TrackerConfig(min_object_score=1e9))
    tr.start(sequence.frames[0].rgb, sequence.masks[0])
    r = tr.track(sequence.frames[1].rgb)
    assert r.status == Status.NO_TARGET and "lost the target" in r.error


def test_errors_name_the_problem(segmenter, sequence):
    tr = Tracker.untrained(segmenter)
    rgb, mask = sequence.frames[0].rgb, sequence.masks[0]
    with pytest.raises(NotReadyError, match="start"):
        tr.track(rgb)
    with pytest.raises(TrackingError, match="empty") as err:
        tr.start(rgb, np.zeros_like(mask))
    assert err.value.status == Status.NO_TARGET
    with pytest.raises(TrackingError, match="shape"):
        tr.start(rgb, mask[:-1])
    with pytest.raises(BadImageError):
        tr.start(rgb[:, :, :2], mask)
    assert not tr.active
    tr.start(rgb, mask)
    with pytest.raises(BadImageError):
        tr.track(np.zeros((0, 4, 3), np.uint8))
    tr.reset()
    assert not tr.active and tr.memory_frames() == []


def test_weights_round_trip_and_sam2_checkpoint(segmenter, tracker, sequence, tmp_path):
    cfg = head_sam_config(segmenter.model.lens_config.sam)
    save_tracking_head(tracker.head, tmp_path / "trk", cfg)
    # a SAM 2 checkpoint as Meta ships it: {"model": state dict incl. the image encoder}
    full = {**{f"image_encoder.{k}": v for k, v in
               segmenter.model.sam.image_encoder.state_dict().items()},
            **tracker.head.state_dict()}
    torch.save({"model": full}, tmp_path / "sam2_tiny.pt")
    rgb, mask = sequence.frames[0].rgb, sequence.masks[0]
    outs = []
    for path in (tmp_path / "trk", tmp_path / "trk" / TRACKER_WEIGHTS, tmp_path / "sam2_tiny.pt"):
        tr = Tracker.from_pretrained(segmenter, path)
        tr.start(rgb, mask)
        outs.append(tr.track(sequence.frames[1].rgb))
    ref = tracker
    ref.start(rgb, mask)
    expected = ref.track(sequence.frames[1].rgb)
    for r in outs:
        assert np.array_equal(r.mask, expected.mask)
        assert r.object_score == pytest.approx(expected.object_score, abs=1e-5)


def test_convert_cli_and_checkpoint_errors(segmenter, tracker, tiny_model_dir, tmp_path):
    torch.save({"model": tracker.head.state_dict()}, tmp_path / "sam2.pt")
    assert main(["convert", "--sam2", str(tmp_path / "sam2.pt"), "--model",
                 str(tiny_model_dir), "--out", str(tmp_path / "out")]) == 0
    assert (Path(tmp_path) / "out" / TRACKER_WEIGHTS).is_file()
    with pytest.raises(CheckpointError, match="no tracking weights"):
        Tracker.from_pretrained(segmenter, tmp_path / "nowhere")
    bad = dict(tracker.head.state_dict())
    bad.pop("maskmem_tpos_enc")
    torch.save({"model": bad}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="maskmem_tpos_enc"):
        Tracker.from_pretrained(segmenter, tmp_path / "bad.pt")
    assert main(["convert", "--sam2", str(tmp_path / "bad.pt"), "--model",
                 str(tiny_model_dir)]) == 1
