"""SAM 2 memory tracking (``lens_ros.model.tracking.memory``) on the tiny preset: the mechanism.

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
from hypothesis import given, settings
from hypothesis import strategies as st

from lens_ros.core import (BadCommandError, BadImageError, CheckpointError, NotReadyError,
                           Segmentation, Status)
from lens_ros.geometry import mask_to_box
from lens_ros.model import LensSegmenter
from lens_ros.model.processing import prepare_sam_image
from lens_ros.model.sam import build_sam
from lens_ros.model.tracking.session import TrackPolicy, TrackSession
from lens_ros.model.tracking.memory import Tracker, TrackerConfig, TrackingError
from lens_ros.model.tracking.weights import (TRACKER_WEIGHTS, encoder_fingerprint,
                                             head_sam_config, main,
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


# ---- track mode policy (TrackSession) --------------------------------------------------------
def _session(tiny_model_dir, **policy):
    seg = LensSegmenter.from_pretrained(tiny_model_dir, max_new_tokens=4)
    return TrackSession(Tracker.untrained(seg), TrackPolicy(**policy), seg)


def test_session_reacquires_on_period_and_new_command(tiny_model_dir, sequence):
    s = _session(tiny_model_dir, reacquire_period=0.5, min_object_score=-1e9)
    s.set_command("the cube")
    steps = [s.step(f.rgb, 0.1 * i) for i, f in enumerate(sequence.frames[:12])]
    assert [st.lens_ran for st in steps] == [i in (0, 5, 10) for i in range(12)]
    assert [st.source_stamp for st in steps] == pytest.approx(
        [0.0] * 5 + [0.5] * 5 + [1.0] * 2)
    assert all(st.result.status == Status.TRACKED for st in steps if not st.lens_ran)
    assert all(st.result.command == "the cube" for st in steps)
    s.set_command("the ball")
    assert s.step(sequence.frames[12].rgb, 1.2).lens_ran
    assert s.lens_calls == 4 and s.frames == 13


def test_session_reruns_lens_at_once_when_the_target_is_lost(tiny_model_dir, sequence):
    s = _session(tiny_model_dir, reacquire_period=100.0, min_object_score=1e9)
    s.set_command("the cube")
    steps = [s.step(f.rgb, 0.1 * i) for i, f in enumerate(sequence.frames[:4])]
    assert all(st.lens_ran for st in steps)  # every tracked frame lost -> LENS on that frame
    assert all(st.result.status == Status.OK for st in steps)


def test_session_without_target_waits_for_the_next_period(tiny_model_dir, sequence):
    s = _session(tiny_model_dir, reacquire_period=0.3)
    s.segmenter.configure(no_target_object_score=1e9)  # LENS answers NO_TARGET
    s.set_command("the cube")
    steps = [s.step(f.rgb, 0.1 * i) for i, f in enumerate(sequence.frames[:7])]
    assert [st.lens_ran for st in steps] == [True, False, False, True, False, False, True]
    assert all(st.result.status == Status.NO_TARGET for st in steps)
    assert "next one runs 0.3 s" in steps[1].result.error
    assert steps[1].result.mask.shape == sequence.frames[1].rgb.shape[:2]
    assert not s.tracker.active


def test_session_errors(tiny_model_dir, sequence):
    s = _session(tiny_model_dir)
    with pytest.raises(NotReadyError, match="set_command"):
        s.step(sequence.frames[0].rgb, 0.0)
    with pytest.raises(BadCommandError):
        s.set_command("   ")
    with pytest.raises(ValueError, match="reacquire_period"):
        s.set_policy(TrackPolicy(reacquire_period=-1))
    with pytest.raises(NotReadyError, match="segmenter"):
        TrackSession(s.tracker).step(sequence.frames[0].rgb, 0.0)


def test_tracker_runs_beside_a_bf16_model(tiny_model_dir, sequence):
    """The CUDA default dtype, checked on the CPU: the bf16 image encoder feeds the fp32 head."""
    seg = LensSegmenter.from_pretrained(tiny_model_dir, device="cpu", dtype=torch.bfloat16)
    tr = Tracker.untrained(seg)
    assert next(tr.head.parameters()).dtype == torch.float32
    tr.start(sequence.frames[0].rgb, sequence.masks[0])
    r = tr.track(sequence.frames[1].rgb)
    assert r.mask.shape == sequence.masks[1].shape and np.isfinite(r.object_score)


def test_head_trained_for_another_image_encoder_is_refused(segmenter, tracker, tmp_path):
    cfg = head_sam_config(segmenter.model.lens_config.sam)
    own = encoder_fingerprint(segmenter.model.sam.image_encoder)
    save_tracking_head(tracker.head, tmp_path / "ok", cfg, {"image_encoder_fingerprint": own})
    Tracker.from_pretrained(segmenter, tmp_path / "ok")  # the same encoder loads
    other = [v * 1.5 + 1e-3 for v in own]
    save_tracking_head(tracker.head, tmp_path / "bad", cfg, {"image_encoder_fingerprint": other})
    with pytest.raises(CheckpointError, match="another SAM image encoder"):
        Tracker.from_pretrained(segmenter, tmp_path / "bad")


def test_tracker_training_step_trains_the_memory(segmenter):
    """lens_ros.demo.tracker_training: one SAM 2-style clip step reaches the memory modules."""
    from lens_ros.demo.tracker_training import (FeaturePool, TrackerTrainConfig, _clip_rows,
                                           clip_loss, make_pool, scene_configs)

    cfg = TrackerTrainConfig(clip_len=4, batch_size=2, vanish_prob=0.5)
    pool = make_pool(2, 6, scene_configs("64x48,48x48"), range(9_000_000, 9_000_050))
    tracker = Tracker.untrained(segmenter)
    features = FeaturePool(tracker, pool)
    assert features.cond.shape == (12, 256, 256) and features.low.shape == (12, 64, 64)
    tracker.head.train()
    rng = np.random.default_rng(0)
    clips = [_clip_rows(features, rng, cfg) for _ in range(cfg.batch_size)]
    loss = clip_loss(tracker, features, np.stack([c[0] for c in clips]),
                     np.stack([c[1] for c in clips]))
    loss.backward()
    assert torch.isfinite(loss)
    for name in ("memory_attention", "memory_encoder", "maskmem_tpos_enc", "obj_ptr_proj",
                 "sam_mask_decoder.transformer"):
        grads = [p.grad for n, p in tracker.head.named_parameters() if n.startswith(name)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    tracker.head.eval()


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 300), scale=st.floats(1e-4, 1e2),
       seed=st.integers(0, 2 ** 16))
def test_int8_row_storage_round_trips_within_half_a_step(rows, cols, scale, seed):
    """Large matrices of a stored tracking head are int8 with per-row scales (half the fp16
    size); loading gives each weight back within half a quantisation step (plus what the fp16
    scale's rounding adds, < 0.07 step at the row maximum); the rest is kept."""
    from lens_ros.model.tracking.weights import INT8_MIN_ELEMENTS, dequantize_rows, quantize_rows

    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(rows, cols, generator=g) * scale).half()
    bias = torch.randn(rows, generator=g).half()
    stored = quantize_rows({"w": w, "b": bias})
    back = dequantize_rows(stored)
    assert set(back) == {"w", "b"} and torch.equal(back["b"], bias)
    if w.numel() < INT8_MIN_ELEMENTS:
        assert torch.equal(back["w"], w)
        return
    assert stored["w"].dtype == torch.int8
    step = w.float().abs().amax(1, keepdim=True) / 127
    assert ((back["w"] - w.float()).abs() <= 0.57 * step + 1e-12).all()
