"""Triggering modes of lens_node: how the inference worker picks its next job.

A mode is a ``ModePolicy`` subclass listed in :data:`lens_ros.serving.mode_registry.MODE_POLICIES`
under the name the ``mode`` parameter takes. ``next_job`` is called with the worker's lock held
and must not block; ``run`` is called without it and returns one ``Outcome`` (the default runs a
full LENS call). ``track`` (:mod:`lens_ros.serving.track_mode`) is a policy whose ``run`` tracks
between LENS calls.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lens_ros.core import Status
from lens_ros.serving.requests import Frame, Outcome, Request

if TYPE_CHECKING:
    from lens_ros.serving.worker import InferenceWorker


@dataclass
class Job:
    """A request paired with the frame to run it on (None: answer NO_IMAGE / use request.image).
    ``batch``: more topic commands for the same frame, answered with one ``segment_batch``."""

    request: Request
    frame: Frame | None
    batch: list[Request] = field(default_factory=list)


class ModePolicy:
    """How the worker chooses its next job. Subclass, set ``name`` and list it in
    ``mode_registry.MODE_POLICIES`` to add a mode; override ``run`` to do something other than a
    LENS call."""

    name = ""

    def next_job(self, worker: "InferenceWorker") -> Job | None:
        """Called with the worker's condition held; return a job or None to wait. Queued
        commands that land on the same frame join the job as one batch."""
        req = worker.pop_request()
        if req is None:
            return None
        frame = worker.frame_for(req)
        return Job(req, frame, worker.pop_batch(req, frame))

    def run(self, worker: "InferenceWorker", job: Job) -> Outcome | list[Outcome]:
        """One Outcome per request of the job (a list for a batch)."""
        return worker.run_lens(job)

    def wait_timeout(self, worker: "InferenceWorker") -> float:
        """Longest sleep before ``next_job`` is asked again (new input wakes it earlier)."""
        return 0.5


class OnCommandPolicy(ModePolicy):
    """Each command is answered once, on the frame nearest to its arrival."""

    name = "on_command"


class ContinuousPolicy(ModePolicy):
    """Commands are answered as in on_command; the last valid one is then re-run on every new
    frame, at most ``rate`` times per second (0: as fast as the model allows)."""

    name = "continuous"

    def __init__(self) -> None:
        self.current: str | None = None
        self.last_seq = -1
        self.last_run = 0.0

    def next_job(self, worker):
        job = super().next_job(worker)
        if job is not None:
            return job
        frame = worker.frames.newest()
        if self.current is None or frame is None or frame.seq == self.last_seq:
            return None
        if time.monotonic() < self.last_run + self._period(worker):
            return None
        return Job(Request(self.current, received=frame.received, source="repeat"), frame)

    def run(self, worker, job):
        self.last_run = time.monotonic()
        outs = worker.run_lens(job)
        out = outs[-1] if isinstance(outs, list) else outs  # a batch: the newest command wins
        if out.frame is not None:
            self.last_seq = out.frame.seq
        if out.result.status not in (Status.BAD_COMMAND, Status.DROPPED, Status.CANCELED):
            self.current = out.result.command or self.current
        return outs

    def wait_timeout(self, worker):
        if self.current is None:
            return 0.5
        return max(0.005, min(0.5, self.last_run + self._period(worker) - time.monotonic()))

    @staticmethod
    def _period(worker) -> float:
        rate = worker.params.rate
        return 1.0 / rate if rate > 0 else 0.0
