"""``track`` mode of lens_node: a full LENS call, then SAM 2 tracking on every new frame.

A command is answered by a full LENS call (as in ``on_command``); from then on every new camera
frame is segmented by the tracker (``lens_ros.model.tracking.memory``) and published with status
TRACKED and ``source_stamp`` = the stamp of the frame of the last LENS call. LENS runs again
every ``reacquire_period`` seconds of camera time, when a new command arrives, or at once when
the tracker's object score drops below ``track_min_object_score``; after a LENS call that found
nothing, frames get NO_TARGET until the next attempt. The decisions are
``lens_ros.model.tracking.session.TrackSession``'s; this module adds frames, outcomes and the 3D
hook. The tracking weights come from ``tracker_path`` (default: ``model_path``).
"""
from __future__ import annotations

import time

from lens_ros.core import CheckpointError, LensError, Segmentation, Status
from lens_ros.model.tracking.session import LENS, WAIT, TrackPolicy, TrackSession
from lens_ros.model.tracking.memory import Tracker
from lens_ros.model.tracking.weights import find_tracking_weights
from lens_ros.serving.modes import Job, ModePolicy
from lens_ros.serving.requests import Frame, Outcome, Request

#: LENS outcomes after which the command is not tracked (it was refused or never ran)
_NOT_TRACKED = (Status.BAD_COMMAND, Status.DROPPED, Status.CANCELED, Status.NOT_READY)


def tracking_weights_problem(params) -> str | None:
    """Why track mode cannot start with these node parameters (no tracking weights), or None."""
    try:
        find_tracking_weights(params.tracker_path or params.model_path)
    except CheckpointError as err:
        return f"mode 'track' needs tracking weights: {err}; or set tracker_path"
    return None


def frame_seconds(frame: Frame) -> float:
    """Camera time of a frame (header stamp), or its arrival time when the stamp is zero."""
    stamp = frame.msg.header.stamp
    seconds = stamp.sec + stamp.nanosec * 1e-9
    return seconds if seconds > 0 else frame.received


class TrackModePolicy(ModePolicy):
    """LENS on commands and re-acquisition, the SAM 2 tracker on the frames between."""

    name = "track"

    def __init__(self) -> None:
        self.session: TrackSession | None = None
        self.last_seq = -1
        self.lens_stamp = None  # builtin_interfaces/Time of the last LENS frame

    def _session(self, worker) -> TrackSession:
        p = worker.params
        if self.session is None:  # CheckpointError without tracking weights
            self.session = TrackSession(Tracker.from_pretrained(
                worker.segmenter, p.tracker_path or p.model_path))
        policy = TrackPolicy(p.reacquire_period, p.track_min_object_score)
        if policy != self.session.policy:
            self.session.set_policy(policy)
        return self.session

    def next_job(self, worker):
        job = super().next_job(worker)
        if job is not None:
            return job
        frame, s = worker.frames.newest(), self.session
        if s is None or s.command is None or frame is None or frame.seq <= self.last_seq:
            return None
        return Job(Request(s.command, received=frame.received, reasoning=s.reasoning,
                           source="repeat"), frame)

    def run(self, worker, job):
        try:
            session = self._session(worker)
        except LensError as err:
            return [Outcome(r, Segmentation.from_error(err, r.command), job.frame)
                    for r in [job.request, *job.batch]]
        if job.request.source == "repeat":
            return self._frame(worker, session, job)
        outs = worker.run_lens(job)
        out = outs[-1] if isinstance(outs, list) else outs  # a batch: the newest command wins
        if out.result.status not in _NOT_TRACKED:
            session.set_command(out.result.command, out.request.reasoning)
            self._lens_done(session, out)
        return outs

    def _lens_done(self, session: TrackSession, out: Outcome) -> None:
        if out.frame is None or out.rgb is None:
            return  # no frame was segmented: the next frame runs LENS
        session.lens_done(out.rgb, out.result, frame_seconds(out.frame))
        self.lens_stamp = out.frame.msg.header.stamp
        self.last_seq = max(self.last_seq, out.frame.seq)

    def _frame(self, worker, session: TrackSession, job: Job) -> Outcome:
        req, frame, t0 = job.request, job.frame, time.monotonic()
        self.last_seq = frame.seq
        todo = session.plan(frame_seconds(frame))
        if todo != LENS:
            try:
                rgb = worker.decode_frame(frame)
            except LensError as err:
                return Outcome(req, Segmentation.from_error(err, req.command), frame)
            if todo == WAIT:
                return Outcome(req, session.searching(rgb.shape[:2]), frame, rgb,
                               source_stamp=self.lens_stamp)
            try:
                result = session.track(rgb)
            except LensError as err:
                session.tracker.reset()
                return Outcome(req, Segmentation.from_error(err, req.command, rgb.shape[:2]),
                               frame, rgb)
            if result is not None:
                out = Outcome(req, result, frame, rgb, model_ms=(time.monotonic() - t0) * 1e3,
                              source_stamp=self.lens_stamp)
                worker.postprocess(out)
                return out
        out = worker.run_lens(job)  # due, first frame, or the target was lost on this frame
        self._lens_done(session, out)
        return out

    def wait_timeout(self, worker) -> float:
        return 0.5  # new frames and commands wake the worker earlier
