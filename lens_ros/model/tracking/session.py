"""Track mode without ROS: full LENS calls now and then, SAM 2 tracking on every frame between.

    session = TrackSession(tracker, TrackPolicy(reacquire_period=5.0), segmenter)
    session.set_command("the red mug")
    for rgb, stamp in frames:
        step = session.step(rgb, stamp)      # step.result: OK/NO_TARGET (LENS) or TRACKED
        step.lens_ran, step.source_stamp      # source_stamp: frame time of the last LENS call

A frame gets a full LENS call (``set_image`` + ``segment``) when there is no target yet, the
command changed, ``reacquire_period`` seconds passed since the last LENS frame, or the tracker's
object score fell below ``min_object_score`` (then LENS re-runs on that same frame). When LENS
finds nothing (NO_TARGET or an empty mask), the frames until the next attempt, one
``reacquire_period`` later, get a NO_TARGET result without a model call.

``step`` does it all with a segmenter; a caller that runs LENS its own way (the node's worker,
with its cancel, timeout and 3D handling) uses the parts: :meth:`plan` says what a frame needs,
:meth:`lens_done` takes the LENS result, :meth:`track` tracks, :meth:`searching` is the
waiting result.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lens_ros.core import NotReadyError, Segmentation, Status
from lens_ros.model.processing import to_rgb_array
from lens_ros.model.tracking.memory import Tracker

LENS, TRACK, WAIT = "lens", "track", "wait"


@dataclass
class TrackPolicy:
    """When track mode re-runs LENS."""

    reacquire_period: float = 5.0  #: seconds between full LENS calls while tracking (0: never)
    #: tracker object-score logit below which LENS re-runs at once (SAM 2's "present" is > 0)
    min_object_score: float = 0.0

    def validate(self) -> None:
        """Raise ValueError naming the field."""
        if self.reacquire_period < 0:
            raise ValueError(f"reacquire_period must be >= 0 s, got {self.reacquire_period}")


@dataclass
class TrackStep:
    """What one frame produced.

    Attributes:
      result (Segmentation): LENS result (OK / NO_TARGET / ...) or tracker result (TRACKED).
      lens_ran (bool): a full LENS call ran on this frame.
      source_stamp (float): stamp of the frame of the last full LENS call.
    """

    result: Segmentation
    lens_ran: bool
    source_stamp: float


class TrackSession:
    """Decides per frame between LENS and the tracker, and keeps the tracker fed (one thread).

    Arguments:
      tracker (Tracker): the SAM 2 tracker (its ``min_object_score`` follows the policy).
      policy (TrackPolicy | None): when to re-run LENS.
      segmenter (LensSegmenter | None): needed by :meth:`step` and :meth:`set_command`'s check.
    """

    def __init__(self, tracker: Tracker, policy: TrackPolicy | None = None,
                 segmenter=None) -> None:
        self.tracker = tracker
        self.segmenter = segmenter
        self.policy = policy or TrackPolicy()
        self.command: str | None = None
        self.reasoning: bool | None = None
        self.last_lens_stamp: float | None = None
        self._last_result: Segmentation | None = None
        self.lens_calls = 0
        self.frames = 0
        self.set_policy(self.policy)

    def set_policy(self, policy: TrackPolicy) -> None:
        """Change the policy (validated); applies from the next frame."""
        policy.validate()
        self.policy = policy
        self.tracker.config.min_object_score = policy.min_object_score

    def set_command(self, command: str, reasoning: bool | None = None) -> None:
        """Track what ``command`` refers to from the next frame on (a LENS call first)."""
        self.command = self.segmenter.check_command(command) if self.segmenter else command
        self.reasoning = reasoning
        self.tracker.reset()
        self.last_lens_stamp = None

    def _due(self, stamp: float) -> bool:
        """A timed LENS call is due (also after the clock jumped back, e.g. a looping bag)."""
        last = self.last_lens_stamp
        if last is None or stamp < last:
            return True
        period = self.policy.reacquire_period
        return period > 0 and stamp - last >= period

    def plan(self, stamp: float) -> str:
        """What the frame at ``stamp`` needs: ``"lens"``, ``"track"`` or ``"wait"``."""
        if self.command is None:
            raise NotReadyError("no command to track; call set_command() first")
        if self._due(stamp):
            return LENS
        if self.tracker.active:
            return TRACK
        return WAIT if self.policy.reacquire_period > 0 else LENS

    def lens_done(self, rgb: np.ndarray, result: Segmentation, stamp: float) -> None:
        """Take the LENS result of the frame ``rgb`` at ``stamp``: (re)start or stop tracking."""
        self.lens_calls += 1
        self.last_lens_stamp, self._last_result = stamp, result
        if result.ok and result.mask.any():  # OK, or NO_DEPTH (3D failed, mask valid)
            self.tracker.start(rgb, result.mask, source=result)
        else:
            self.tracker.reset()

    def track(self, rgb: np.ndarray) -> Segmentation | None:
        """The tracked result, or None when the target is lost (run LENS on this frame)."""
        result = self.tracker.track(rgb)
        return result if result.status == Status.TRACKED else None

    def searching(self, hw: tuple[int, int]) -> Segmentation:
        """NO_TARGET result for a frame between LENS calls that found nothing."""
        last = self._last_result
        reason = (last.error or "empty mask") if last else "no LENS call yet"
        return Segmentation.failure(
            self.command or "", Status.NO_TARGET,
            f"no target at the last LENS call ({reason}); the next one runs "
            f"{self.policy.reacquire_period:g} s after it", hw,
            reasoning=last.reasoning if last else "", answer=last.answer if last else "")

    def step(self, image: np.ndarray, stamp: float) -> TrackStep:
        """Process one frame (HxWx3 uint8 RGB) taken at ``stamp`` seconds with the segmenter."""
        if self.segmenter is None:
            raise NotReadyError("step() needs the session's segmenter; pass one at creation")
        rgb = to_rgb_array(image)
        self.frames += 1
        todo = self.plan(stamp)
        if todo == TRACK:
            result = self.track(rgb)
            if result is not None:
                return TrackStep(result, False, self.last_lens_stamp)
        elif todo == WAIT:
            return TrackStep(self.searching(rgb.shape[:2]), False, self.last_lens_stamp)
        self.segmenter.set_image(rgb)
        result = self.segmenter.segment(self.command, reasoning=self.reasoning)
        self.lens_done(rgb, result, stamp)
        return TrackStep(result, True, stamp)
