"""Follow a LENS target on later frames with SAM 2's memory (the video predictor's mechanism).

    seg = LensSegmenter.from_pretrained(path)
    tracker = Tracker.from_pretrained(seg, path)        # tracker.safetensors in the model dir
    seg.set_image(rgb0); r0 = seg.segment("the red mug")
    tracker.start(rgb0, r0.mask, source=r0)              # the LENS frame conditions the memory
    r = tracker.track(rgb1)                              # Segmentation(status=TRACKED, ...)

Per tracked frame (SAM 2 ``SAM2VideoPredictor.propagate_in_video``, one object, no clicks):

1. the LENS model's SAM 2 image encoder (shared, in the model's dtype) encodes the frame; the
   tracking head's ``conv_s0``/``conv_s1`` project the two high-resolution levels;
2. memory attention conditions the stride-16 features on the memory bank: the conditioning
   frame (``start``) and the last ``num_maskmem - 1`` tracked frames (memory-encoder outputs +
   temporal encodings), plus the object pointers of the conditioning frame and up to
   ``max_obj_ptrs - 1`` recent frames;
3. the head's mask decoder (no prompt, three masks, the best predicted IoU wins) gives the
   mask and the object-score logit; below 0 the mask is emptied (SAM 2's occlusion handling);
4. the memory encoder turns the mask into this frame's memory.

Steps 2-4 are the ``sam2`` package's own ``SAM2Base._track_step`` and
``_encode_memory_in_output`` on the tracking head (``lens_ros.model.tracking.weights``); this module adds
the frame encoding, a bounded memory bank for endless streams and the result. The conditioning
frame takes the LENS mask as SAM 2's ``add_new_mask`` does (resized to the SAM input, >= 0.5,
used as the output without the decoder, its pointer from the decoder on the mask prompt).
Differences from the video predictor: memories stay float32 (it stores them in bf16) and no
hole filling (it needs the CUDA extension). A tracker is not thread-safe: use it from one thread.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lens_ros.core import LensError, NotReadyError, Segmentation, Status, Timings
from lens_ros.geometry import mask_to_box
from lens_ros.configuration import build_config
from lens_ros.model.modeling import LensModel
from lens_ros.model.processing import prepare_sam_image, to_rgb_array
from lens_ros.model.sam import prepare_backbone_features, sam_dtype, track_frame
from lens_ros.model.tracking.weights import head_sam_config, init_tracking_head, load_tracking_head


class TrackingError(LensError, ValueError):
    """Raised when tracking cannot start: an empty or mis-sized start mask."""

    status = Status.NO_TARGET


@dataclass
class TrackerConfig:
    """How a :class:`Tracker` runs (the head's sizes come with its weights)."""

    max_obj_ptrs: int = 16  #: object pointers attended to (SAM 2: 16, the conditioning one first)
    #: object-score logit below which a tracked frame reports NO_TARGET (the target is judged
    #: gone or occluded; SAM 2 empties the mask below 0, so 0.0 is SAM 2's own boundary)
    min_object_score: float = 0.0
    mask_threshold: float = 0.0  #: a pixel is in the mask when its upsampled logit exceeds this

    def validate(self) -> None:
        """Raise ValueError naming the field."""
        if self.max_obj_ptrs < 1:
            raise ValueError(f"max_obj_ptrs must be >= 1, got {self.max_obj_ptrs}")

    @classmethod
    def from_dict(cls, data: dict) -> "TrackerConfig":
        """Build from a dict; unknown keys raise ValueError naming them."""
        cfg = build_config(cls, data, "tracker")
        cfg.validate()
        return cfg


@dataclass
class FrameFeatures:
    """SAM 2 features of one frame in the layout ``SAM2Base`` methods take (float32)."""

    feats: list[torch.Tensor]  # per level (HW, 1, C): strides 4, 8 (projected), 16
    pos: list[torch.Tensor]  # per level (HW, 1, C) sine position encodings
    sizes: list[tuple[int, int]]  # per level (H, W)


def _lens_model(model_or_segmenter) -> LensModel:
    if isinstance(model_or_segmenter, LensModel):
        return model_or_segmenter
    model = getattr(model_or_segmenter, "model", model_or_segmenter)
    if model is None:
        raise NotReadyError("the segmenter was released; load a new one before tracking")
    if not isinstance(model, LensModel):
        raise TypeError(f"expected a LensModel or LensSegmenter, got {type(model).__name__}")
    return model


class Tracker:
    """SAM 2 memory tracking on the LENS model's image encoder (see the module doc).

    Arguments:
      model: the LensModel, or a LensSegmenter (its model is used, not copied).
      head: the tracking head (``SAM2Base`` without image encoder, float32, same device).
      config (TrackerConfig | None): run settings.
    """

    def __init__(self, model, head, config: TrackerConfig | None = None) -> None:
        self._model = _lens_model(model)
        self.head = head.eval()
        self.config = config or TrackerConfig()
        self.config.validate()
        self.head.max_obj_ptrs_in_encoder = self.config.max_obj_ptrs
        self._bank: dict | None = None
        self._index = -1
        self._source: Segmentation | None = None

    @classmethod
    def from_pretrained(cls, model, path, config: TrackerConfig | None = None) -> "Tracker":
        """Load the head from ``path`` (a directory with ``tracker.safetensors``, that file, or
        a SAM 2 ``.pt`` checkpoint); CheckpointError names what is missing or mis-shaped."""
        lens = _lens_model(model)
        head, _ = load_tracking_head(path, lens.lens_config.sam, lens.device,
                                     lens.sam.image_encoder)
        return cls(lens, head, config)

    @classmethod
    def untrained(cls, model, seed: int = 0, config: TrackerConfig | None = None) -> "Tracker":
        """Decoder parts copied from the LENS model, memory modules random: for tests and as
        the start of training. It runs every step but cannot follow a target."""
        lens = _lens_model(model)
        cfg = head_sam_config(lens.lens_config.sam)
        return cls(lens, init_tracking_head(lens.sam, cfg, seed, lens.device), config)

    # ---- state ---------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True between :meth:`start` and :meth:`reset`."""
        return self._bank is not None

    @property
    def frames_tracked(self) -> int:
        """Frames tracked since the last :meth:`start`."""
        return max(self._index, 0)

    @property
    def source(self) -> Segmentation | None:
        """The LENS result tracking started from (its command, reasoning and answer are copied
        into every tracked result)."""
        return self._source

    def reset(self) -> None:
        """Forget the target and the memory bank."""
        self._bank, self._index, self._source = None, -1, None

    def memory_frames(self) -> list[int]:
        """Indices of the tracked frames whose outputs are kept (bounded, for long streams)."""
        return sorted(self._bank["non_cond_frame_outputs"]) if self._bank else []

    # ---- frames --------------------------------------------------------------------------
    def encode_frame(self, rgb: np.ndarray) -> FrameFeatures:
        """SAM 2 features of one HxWx3 uint8 RGB frame, projected as the tracking head takes
        them (float32, on the model's device)."""
        model, head = self._model, self.head
        cfg = model.lens_config
        pixels = prepare_sam_image(rgb, cfg.sam.image_size, cfg.processing.sam_pixel_mean,
                                   cfg.processing.sam_pixel_std)
        out = model.sam.image_encoder(pixels.to(model.device, sam_dtype(model.sam)))
        fpn = [f.float() for f in out["backbone_fpn"]]
        # the video model's own decoder projects the high-res levels (SAM2Base.forward_image)
        fpn[0] = head.sam_mask_decoder.conv_s0(fpn[0])
        fpn[1] = head.sam_mask_decoder.conv_s1(fpn[1])
        pos = [p.float() for p in out["vision_pos_enc"]]
        backbone = {"backbone_fpn": fpn, "vision_pos_enc": pos}
        _, feats, pos, sizes = prepare_backbone_features(head, backbone)
        return FrameFeatures(feats, pos, sizes)

    def _mask_input(self, mask: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
        mask = np.asarray(mask)
        if mask.shape != hw:
            raise TrackingError(f"start mask has shape {mask.shape}, the frame is {hw}; give "
                                "the HxW mask of the same frame")
        if not mask.any():
            raise TrackingError("the start mask is empty, so there is no target to track; "
                                "start from a LENS result with a non-empty mask")
        m = torch.from_numpy(mask.astype(np.float32))[None, None].to(self._model.device)
        size = self.head.image_size
        if m.shape[-2:] != (size, size):  # as SAM2VideoPredictor.add_new_mask
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
            m = (m >= 0.5).float()
        return m

    @staticmethod
    def _slim(out: dict) -> dict:
        """What later frames read from a frame's output (drops the full-size masks)."""
        keep = ("maskmem_features", "maskmem_pos_enc", "obj_ptr", "object_score_logits")
        return {k: out[k] for k in keep if k in out}

    # ---- API -----------------------------------------------------------------------------
    @torch.inference_mode()
    def start(self, image: np.ndarray, mask: np.ndarray,
              source: Segmentation | None = None) -> None:
        """(Re)start on a frame and the target's mask there; forgets any previous memory.

        Arguments:
          image (np.ndarray): HxWx3 uint8 RGB (gray/RGBA converted), the frame of ``mask``.
          mask (np.ndarray): HxW bool target mask on that frame (e.g. ``source.mask``).
          source (Segmentation | None): the LENS result; its command, reasoning and answer
            are carried by every tracked result.
        Raises:
          BadImageError (bad frame), TrackingError (empty or mis-sized mask).
        """
        rgb = to_rgb_array(image)
        m = self._mask_input(mask, rgb.shape[:2])
        self.reset()
        f = self.encode_frame(rgb)
        bank = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        out = self.head.track_step(
            frame_idx=0, is_init_cond_frame=True, current_vision_feats=f.feats,
            current_vision_pos_embeds=f.pos, feat_sizes=f.sizes, point_inputs=None,
            mask_inputs=m, output_dict=bank, num_frames=1, run_mem_encoder=True)
        bank["cond_frame_outputs"][0] = self._slim(out)
        self._bank, self._index = bank, 0
        self._source = source

    @torch.inference_mode()
    def track(self, image: np.ndarray) -> Segmentation:
        """Segment the target on the next frame.

        Arguments:
          image (np.ndarray): HxWx3 uint8 RGB; any size (masks come back at this size).
        Returns:
          Segmentation with mask (HxW bool), box (xyxy of the mask, exclusive x2/y2, or None),
          score (predicted IoU), object_score (logit), status TRACKED, or NO_TARGET when the
          object score is below ``config.min_object_score`` (mask then usually empty); command,
          reasoning and answer of the source result; timings (encode_ms, mask_ms, total_ms).
        Raises:
          NotReadyError before :meth:`start`; BadImageError for a bad frame.
        """
        if self._bank is None:
            raise NotReadyError("the tracker has no target; call start(rgb, mask) first")
        rgb = to_rgb_array(image)
        t0 = time.perf_counter()
        f = self.encode_frame(rgb)
        t1 = time.perf_counter()
        head, idx = self.head, self._index + 1
        out, _, ious, low_res, obj_score = track_frame(head, idx, f.feats, f.pos, f.sizes,
                                                       self._bank, idx + 1)
        self._remember(idx, out)
        logits = LensModel.upsample_masks(low_res, rgb.shape[:2])
        mask = (logits[0, 0] > self.config.mask_threshold).cpu().numpy()
        t2 = time.perf_counter()
        return self._result(mask, float(ious.max()), float(obj_score.reshape(-1)[0]),
                            Timings(encode_ms=(t1 - t0) * 1e3, mask_ms=(t2 - t1) * 1e3,
                                    total_ms=(t2 - t0) * 1e3))

    def _remember(self, idx: int, out: dict) -> None:
        frames = self._bank["non_cond_frame_outputs"]
        frames[idx] = self._slim(out)
        # _prepare_memory_conditioned_features reads the last num_maskmem - 1 frames' memories
        # and the last max_obj_ptrs - 1 frames' pointers; older outputs are never read again
        keep = max(self.head.num_maskmem - 1, self.config.max_obj_ptrs - 1)
        for old in [k for k in frames if k <= idx - keep]:
            del frames[old]
        self._index = idx

    def _result(self, mask: np.ndarray, score: float, obj: float, timings: Timings):
        src = self._source
        box = mask_to_box(mask)
        status, error = Status.TRACKED, ""
        if obj < self.config.min_object_score:
            status = Status.NO_TARGET
            error = (f"tracker lost the target: object score {obj:.2f} < min_object_score "
                     f"{self.config.min_object_score}")
        return Segmentation(
            command=src.command if src else "", mask=mask,
            box=tuple(float(v) for v in box) if box is not None else None,
            score=score, object_score=obj, reasoning=src.reasoning if src else "",
            answer=src.answer if src else "", status=status, error=error, timings=timings)
