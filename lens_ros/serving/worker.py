"""The inference worker of lens_node: one thread that owns the model while the node is active.

rclpy-free so that it can be tested without ROS: the node gives the worker three functions
(``decode`` a frame message to HxWx3 uint8 RGB, ``deliver`` an ``Outcome`` to the topics,
``configure_model`` with new settings) and gets exactly one ``Outcome`` per submitted request,
whatever happens. ROS callbacks only call ``put_frame`` and ``submit``, which never wait for the
model. How the next job is chosen is the mode's business (``lens_ros.serving.modes``).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from lens_ros.core import BadCommandError, CanceledError, LensError, Segmentation, Status
from lens_ros.serving.mode_registry import MODE_POLICIES
from lens_ros.serving.modes import Job, ModePolicy
from lens_ros.serving.requests import (ERROR_STATUSES, Frame, FrameBuffer, Outcome, Request,
                                       WorkerStats)

log = logging.getLogger(__name__)


class InferenceWorker:
    """One thread that owns the model while the node is active.

    Arguments:
      segmenter: a ``LensSegmenter`` (``set_image``, ``segment``, ``reset_image``).
      params: a ``NodeParams``; replace ``worker.params`` to change settings at runtime.
      decode: message -> HxWx3 uint8 RGB; raises ``BadImageError`` on a bad frame.
      deliver: publishes an ``Outcome``; called from the worker thread or from ``submit``.
      configure_model: called in the worker thread with new params before the next request.
      postprocess: called in the worker thread on each outcome of a model run, before
        ``deliver`` (the 3D target is added there).
    """

    def __init__(self, segmenter, params, decode: Callable[[Any], np.ndarray],
                 deliver: Callable[[Outcome], None],
                 configure_model: Callable[[Any, Any], None] | None = None,
                 postprocess: Callable[[Outcome], None] | None = None) -> None:
        if params.mode not in MODE_POLICIES:
            raise ValueError(f"mode {params.mode!r} is not available; available modes: "
                             f"{sorted(MODE_POLICIES)}")
        self.segmenter = segmenter
        self.params = params
        self.policy: ModePolicy = MODE_POLICIES[params.mode]()
        self.frames = FrameBuffer(params.image_buffer_size)
        self.stats = WorkerStats()
        self._decode, self._deliver, self._configure_model = decode, deliver, configure_model
        self._postprocess = postprocess
        self._queue: collections.deque[Request] = collections.deque()
        self._cv = threading.Condition()
        self._stats_lock = threading.Lock()
        self._busy = False
        self._stopping = False
        self._applied = None  # params object last given to configure_model
        self._image_frame: Frame | None = None  # frame whose features the segmenter holds
        self._thread = threading.Thread(target=self._loop, name="lens_inference", daemon=True)

    # -- called from ROS callbacks: never block on the model -----------------------------------
    def start(self) -> None:
        self._thread.start()

    def put_frame(self, msg: Any) -> None:
        """Keep a camera frame (the buffer is bounded, so a slow model drops frames)."""
        with self._cv:
            if self.frames.put(msg, time.monotonic(), self._busy):
                self.stats.frames_dropped += 1
            self.stats.frames_received += 1
            self._cv.notify()

    def submit(self, req: Request) -> None:
        """Queue a request; bad commands and queue overflow are answered at once."""
        with self._stats_lock:
            self.stats.commands_received += 1
        try:
            req.command = self.segmenter.check_command(req.command)
        except BadCommandError as err:
            self._finish(Outcome(req, Segmentation.from_error(err, req.command.strip()
                                                               if isinstance(req.command, str)
                                                               else ""),
                                 self.frames.newest()))
            return
        with self._cv:
            stopping = self._stopping
            if not stopping:
                self._queue.append(req)
                dropped = self._trim_queue()
                self._cv.notify()
        if stopping:
            self._finish(Outcome(req, Segmentation.failure(
                req.command, Status.NOT_READY, "the node is deactivating"), None))
            return
        for old in dropped:
            self._answer_dropped(old)

    def withdraw(self, req: Request, status: Status, reason: str) -> bool:
        """Answer a still-queued request at once (e.g. a canceled goal); False if not queued."""
        with self._cv:
            try:
                self._queue.remove(req)
            except ValueError:
                return False
        self._finish(Outcome(req, Segmentation.failure(req.command, status, reason), None))
        return True

    def queue_length(self) -> int:
        return len(self._queue)

    def update_params(self, params) -> None:
        """Take new runtime settings (mode switch, queue and buffer sizes apply at once)."""
        with self._cv:
            if params.mode != self.params.mode:
                if params.mode not in MODE_POLICIES:
                    raise ValueError(f"mode {params.mode!r} is not available; available: "
                                     f"{sorted(MODE_POLICIES)}")
                self.policy = MODE_POLICIES[params.mode]()
            self.params = params
            if params.image_buffer_size != self.frames._frames.maxlen:
                self.frames.resize(params.image_buffer_size)
            dropped = self._trim_queue()
            self._cv.notify()
        for old in dropped:
            self._answer_dropped(old)

    def stop(self, reason: str = "the node is deactivating", timeout: float = 30.0) -> None:
        """Cancel the running request, answer every queued one NOT_READY, join the thread."""
        with self._cv:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            self._cv.notify()
        for req in pending:
            self._finish(Outcome(req, Segmentation.failure(req.command, Status.NOT_READY, reason),
                                 None))
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- used by mode policies (condition held) ------------------------------------------------
    def pop_request(self) -> Request | None:
        return self._queue.popleft() if self._queue else None

    def frame_for(self, req: Request) -> Frame | None:
        """The explicit goal image, else the buffered frame nearest to the command's arrival."""
        if req.image is not None:
            return Frame(req.image, req.received)
        return self.frames.nearest(req.received)

    def pop_batch(self, req: Request, frame: Frame | None, limit: int = 8) -> list[Request]:
        """Queued topic commands that will be answered on the same ``frame`` as ``req`` with
        the same reasoning setting (taken off the queue): one ``segment_batch`` serves them.
        Action goals stay alone (they stream feedback and can be canceled one by one)."""
        if not _batchable(req) or frame is None or req.image is not None:
            return []
        same = [r for r in self._queue if _batchable(r) and r.reasoning == req.reasoning
                and r.image is None and self.frames.nearest(r.received) is frame][:limit - 1]
        for r in same:
            self._queue.remove(r)
        return same

    def decode_frame(self, frame: Frame) -> np.ndarray:
        """HxWx3 uint8 RGB of ``frame`` (BadImageError on a bad one); marks it used."""
        rgb = self._decode(frame.msg)
        frame.used = True
        return rgb

    def postprocess(self, out: Outcome) -> None:
        """The node's hook (3D target) on a successful outcome of a mode's own model run."""
        if self._postprocess is not None and out.result.ok:
            self._postprocess(out)

    def run_lens(self, job: Job) -> Outcome | list[Outcome]:
        """Answer a job with a full LENS call (one ``segment_batch`` when the job holds several
        commands); every failure becomes a status."""
        if job.batch:
            return self._run_batch(job)
        req, frame, t0 = job.request, job.frame, time.monotonic()
        fail = self._precheck(req, frame, t0)
        if fail is not None:
            return Outcome(req, Segmentation.failure(req.command, *fail), frame,
                           total_ms=_ms(t0))
        try:
            rgb = self._decode(frame.msg)
        except LensError as err:
            return Outcome(req, Segmentation.from_error(err, req.command), frame, total_ms=_ms(t0))
        frame.used = True
        return self._segment(req, frame, rgb, t0)

    def _run_batch(self, job: Job) -> list[Outcome]:
        """Several topic commands on one frame: one image encoding, one generate batch."""
        frame, t0 = job.frame, time.monotonic()
        reqs = [job.request, *job.batch]
        outs: dict[int, Outcome] = {}
        ready = []
        for i, req in enumerate(reqs):
            fail = self._precheck(req, frame, t0)
            if fail is None:
                ready.append(i)
            else:
                outs[i] = Outcome(req, Segmentation.failure(req.command, *fail), frame)
        if ready:
            try:
                rgb = self.decode_frame(frame)
            except LensError as err:
                outs.update({i: Outcome(reqs[i], Segmentation.from_error(err, reqs[i].command),
                                        frame) for i in ready})
            else:
                results, model_ms = self._segment_batch([reqs[i] for i in ready], frame, rgb)
                for i, result in zip(ready, results):
                    outs[i] = Outcome(reqs[i], result, frame, rgb, model_ms=model_ms)
                    self.postprocess(outs[i])
        for out in outs.values():
            out.total_ms = _ms(t0)
        return [outs[i] for i in range(len(reqs))]

    def _segment_batch(self, reqs: list[Request], frame: Frame, rgb: np.ndarray):
        seg, shape, tm = self.segmenter, rgb.shape[:2], time.monotonic()
        reasoning = self.params.reasoning if reqs[0].reasoning is None else reqs[0].reasoning
        try:
            if frame is not self._image_frame:
                self._image_frame = None
                seg.set_image(rgb)
                self._image_frame = frame
            results = seg.segment_batch([r.command for r in reqs], reasoning=reasoning)
        except LensError as err:
            results = [Segmentation.from_error(err, r.command, shape) for r in reqs]
        except Exception as err:  # any model failure is a MODEL_ERROR result, never a dead node
            log.exception("model failed on a batch of %d commands", len(reqs))
            self._image_frame = None
            results = [Segmentation.from_error(err, r.command, shape) for r in reqs]
        return results, _ms(tm)

    def _precheck(self, req: Request, frame: Frame | None, t0: float):
        """(status, reason) when ``req`` cannot run on ``frame``, else None."""
        p = self.params
        fail = None
        if self._canceled(req):
            fail = (Status.NOT_READY, "the node is deactivating") if self._stopping else \
                (Status.CANCELED, req.cancel_reason or "canceled before it started")
        elif p.command_timeout > 0 and t0 - req.received > p.command_timeout:
            fail = (Status.TIMEOUT, f"waited {t0 - req.received:.2f} s in the queue, more than "
                                    f"command_timeout={p.command_timeout} s")
        elif frame is None:
            fail = (Status.NO_IMAGE, "no camera frame received yet on 'image'; publish frames "
                                     "before commands or send the image with the action goal")
        elif (p.frame_max_age > 0 and req.image is None
              and (gap := abs(frame.received - req.received)) > p.frame_max_age):
            fail = (Status.NO_IMAGE, f"the nearest frame is {gap:.2f} s from the command, more "
                                     f"than frame_max_age={p.frame_max_age} s; is the camera "
                                     "running?")
        return fail

    # -- worker thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                job = None
                while not self._stopping:
                    job = self.policy.next_job(self)
                    if job is not None:
                        break
                    self._cv.wait(self.policy.wait_timeout(self))
                if self._stopping and job is None:
                    return
                self._busy = True
                policy = self.policy
            try:
                self._apply_params()
                out = policy.run(self, job)
            except Exception as err:  # a bug must cost one MODEL_ERROR result, not the worker
                log.exception("inference worker failed on %r", job.request.command)
                out = [Outcome(r, Segmentation.from_error(err, r.command), job.frame)
                       for r in [job.request, *job.batch]]
            finally:
                self._busy = False
            for one in (out if isinstance(out, list) else [out]):  # a batch gives several
                self._finish(one)

    def _segment(self, req: Request, frame: Frame, rgb: np.ndarray, t0: float) -> Outcome:
        seg, shape = self.segmenter, rgb.shape[:2]
        reasoning = self.params.reasoning if req.reasoning is None else req.reasoning
        tm = time.monotonic()
        try:
            if frame is not self._image_frame:  # identity, and the reference keeps it unique
                self._image_frame = None
                _stage(req, "encode")
                seg.set_image(rgb)
                self._image_frame = frame
            _stage(req, "generate")
            result = seg.segment(req.command, reasoning=reasoning, stream=req.stream,
                                 cancel=lambda: self._canceled(req))
        except CanceledError as err:
            result = Segmentation.from_error(err, req.command, shape)
            if req.cancel_reason:
                result.error = f"{req.cancel_reason}; {result.error}"
            if self._stopping:
                result = Segmentation.failure(req.command, Status.NOT_READY,
                                              "the node deactivated during generation", shape)
        except LensError as err:
            result = Segmentation.from_error(err, req.command, shape)
        except Exception as err:  # any model failure is a MODEL_ERROR result, never a dead node
            log.exception("model failed on %r", req.command)
            self._image_frame = None
            result = Segmentation.from_error(err, req.command, shape)
        out = Outcome(req, result, frame, rgb, model_ms=_ms(tm))
        self.postprocess(out)
        out.total_ms = _ms(t0)
        return out

    def _apply_params(self) -> None:
        params = self.params
        if params is not self._applied and self._configure_model is not None:
            self._applied = params  # tried once: a failure costs one MODEL_ERROR result
            self._configure_model(self.segmenter, params)

    def _canceled(self, req: Request) -> bool:
        return self._stopping or bool(req.cancel is not None and req.cancel())

    def _trim_queue(self) -> list[Request]:
        dropped = []
        while len(self._queue) > self.params.command_queue_size:
            dropped.append(self._queue.popleft())
        return dropped

    def _answer_dropped(self, req: Request) -> None:
        err = (f"command queue full (command_queue_size={self.params.command_queue_size}); "
               "dropped the oldest command")
        self._finish(Outcome(req, Segmentation.failure(req.command, Status.DROPPED, err),
                             self.frames.newest()))

    def _finish(self, out: Outcome) -> None:
        """Count and hand over one outcome; a failing publisher must not stop the worker."""
        st, res = self.stats, out.result
        if out.total_ms == 0.0:
            out.total_ms = max(0.0, _ms(out.request.received))
        with self._stats_lock:
            st.results += 1
            st.by_status[res.status.name] += 1
            st.last_result_error = res.status in ERROR_STATUSES
            if st.last_result_error:
                st.errors += 1
                st.last_error = f"{res.status.name}: {res.error}"
        t0 = time.monotonic()
        for fn in (self._deliver, out.request.on_done):
            if fn is None:
                continue
            try:
                fn(out)
            except Exception:  # a publisher failing (e.g. at shutdown) must not stop the worker
                log.exception("delivering the result of %r failed", out.request.command)
        if out.model_ms > 0:
            st.last_model_ms = out.model_ms
            st.last_overhead_ms = out.total_ms - out.model_ms + _ms(t0)
            st.last_latency_ms = _ms(out.request.received)  # arrival -> published


def _batchable(req: Request) -> bool:
    """Plain topic commands (no feedback stream, no per-goal cancel) can share a batch."""
    return req.source == "topic" and req.stream is None and req.cancel is None


def _stage(req: Request, name: str) -> None:
    if req.stage is not None:
        req.stage(name)


def _ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000.0
