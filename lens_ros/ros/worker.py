"""Scheduling requests onto the one model: recent-frame buffer, bounded command queue, worker thread.

rclpy-free so that it can be tested without ROS: frames are opaque message objects (the node
passes ``sensor_msgs/Image``), the node gives the worker three functions (``decode`` a message to
HxWx3 uint8 RGB, ``deliver`` an ``Outcome`` to the topics, ``configure_model`` with new settings)
and gets exactly one ``Outcome`` per submitted request, whatever happens.

Threads: ROS callbacks only call ``put_frame`` and ``submit``, which never block on the model;
the single worker thread runs the model. Modes are ``ModePolicy`` subclasses registered in
``MODE_POLICIES`` (the tracking issue adds ``track`` there).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lens_ros.core import BadCommandError, CanceledError, LensError, Segmentation, Status

log = logging.getLogger(__name__)

#: Statuses that count as an error in the diagnostics (a request that could not be served).
ERROR_STATUSES = frozenset(Status) - {Status.OK, Status.NO_TARGET, Status.TRACKED,
                                      Status.CANCELED}


@dataclass
class Frame:
    """A camera frame as received: the message (its header goes on every output) and when."""

    msg: Any  #: sensor_msgs/Image (or any object the node's ``decode`` accepts)
    received: float  #: time.monotonic() at arrival
    seq: int = -1  #: arrival counter (-1: a frame given with an action goal)
    used: bool = False  #: the worker has segmented it at least once


@dataclass
class Request:
    """One command to answer; ``on_done`` (if set) receives its one ``Outcome``."""

    command: str
    received: float = field(default_factory=time.monotonic)
    image: Any = None  #: explicit frame message (action goal); None: use the camera buffer
    reasoning: bool | None = None  #: None: the node's ``reasoning`` parameter
    stream: Callable[[str], None] | None = None  #: called with the text generated so far
    cancel: Callable[[], bool] | None = None  #: polled before and during generation
    stage: Callable[[str], None] | None = None  #: told "encode", "generate", ...
    on_done: Callable[["Outcome"], None] | None = None
    source: str = "topic"  #: "topic", "action" or "repeat" (continuous re-run)
    cancel_reason: str = ""  #: why ``cancel`` turned True ("canceled by the client", ...)


@dataclass
class Outcome:
    """What happened to one request: the result and the frame it was computed on."""

    request: Request
    result: Segmentation
    frame: Frame | None = None  #: segmented frame; None when no usable frame was reached
    rgb: np.ndarray | None = None  #: HxWx3 uint8 RGB of ``frame`` when it could be decoded
    model_ms: float = 0.0  #: time inside LensSegmenter (set_image + segment)
    total_ms: float = 0.0  #: from taking the request to handing the outcome over
    message: Any = None  #: the LensResult built by the node's ``deliver`` (for the action)


@dataclass
class WorkerStats:
    """Counters for /diagnostics (read without a lock: each field is a plain int/float/str)."""

    frames_received: int = 0
    frames_dropped: int = 0  #: frames replaced by a newer one while the model was busy, unused
    commands_received: int = 0
    results: int = 0
    errors: int = 0
    by_status: dict = field(default_factory=lambda: collections.Counter())
    last_latency_ms: float = 0.0
    last_model_ms: float = 0.0
    last_overhead_ms: float = 0.0  #: decode + publish of the last result (total - model)
    last_error: str = ""
    last_result_error: bool = False  #: the most recent result had an error status


def check_decodable(command: str) -> str:
    """``command`` unchanged, or ``BadCommandError`` if it holds undecodable bytes.

    rclpy decodes invalid UTF-8 with "replace", so such input arrives as U+FFFD; C0 control
    characters other than tab/newline are refused too. Emptiness, length and special tokens are
    checked by ``LensSegmenter.check_command``.
    """
    bad = next((i for i, ch in enumerate(command)
                if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r")), None)
    if bad is not None:
        raise BadCommandError(f"command is not valid UTF-8 text (character {command[bad]!r} at "
                              f"position {bad}); publish UTF-8 encoded text")
    return command


class FrameBuffer:
    """The last ``size`` frames; the worker takes the newest or the one nearest to a time."""

    def __init__(self, size: int) -> None:
        self._frames: collections.deque[Frame] = collections.deque(maxlen=size)
        self._seq = 0

    def put(self, msg: Any, now: float, busy: bool) -> bool:
        """Store a frame; True when it replaced an unused newest frame while busy (a drop)."""
        dropped = bool(busy and self._frames and not self._frames[-1].used)
        self._frames.append(Frame(msg, now, self._seq))
        self._seq += 1
        return dropped

    def newest(self) -> Frame | None:
        return self._frames[-1] if self._frames else None

    def nearest(self, t: float) -> Frame | None:
        """The frame whose arrival is nearest to ``t`` (monotonic seconds)."""
        frames = list(self._frames)  # copy: the callback thread appends concurrently
        return min(frames, key=lambda f: abs(f.received - t)) if frames else None

    def resize(self, size: int) -> None:
        self._frames = collections.deque(self._frames, maxlen=size)

    def __len__(self) -> int:
        return len(self._frames)


@dataclass
class Job:
    """A request paired with the frame to run it on (None: answer NO_IMAGE / use request.image)."""

    request: Request
    frame: Frame | None


class ModePolicy:
    """How the worker chooses its next job. Subclass, set ``name`` and register it in
    ``MODE_POLICIES`` to add a mode; override ``run`` to do something other than a LENS call."""

    name = ""

    def next_job(self, worker: "InferenceWorker") -> Job | None:
        """Called with the worker's condition held; return a job or None to wait."""
        req = worker.pop_request()
        return None if req is None else Job(req, worker.frame_for(req))

    def run(self, worker: "InferenceWorker", job: Job) -> Outcome:
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
        out = worker.run_lens(job)
        if out.frame is not None:
            self.last_seq = out.frame.seq
        if out.result.status not in (Status.BAD_COMMAND, Status.DROPPED, Status.CANCELED):
            self.current = out.result.command or self.current
        return out

    def wait_timeout(self, worker):
        if self.current is None:
            return 0.5
        return max(0.005, min(0.5, self.last_run + self._period(worker) - time.monotonic()))

    @staticmethod
    def _period(worker) -> float:
        rate = worker.params.rate
        return 1.0 / rate if rate > 0 else 0.0


MODE_POLICIES: dict[str, type[ModePolicy]] = {
    OnCommandPolicy.name: OnCommandPolicy,
    ContinuousPolicy.name: ContinuousPolicy,
}


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
        self._image_key = None  # frame whose features the segmenter holds
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
            req.command = check_decodable(self.segmenter.check_command(req.command))
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

    def run_lens(self, job: Job) -> Outcome:
        """Answer one request with a full LENS call; every failure becomes a status."""
        req, frame, t0 = job.request, job.frame, time.monotonic()
        p = self.params
        fail = None
        if self._canceled(req):
            fail = (Status.NOT_READY, "the node is deactivating") if self._stopping else \
                (Status.CANCELED, "canceled before it started")
        elif p.command_timeout > 0 and t0 - req.received > p.command_timeout:
            fail = (Status.TIMEOUT, f"waited {t0 - req.received:.2f} s in the queue, more than "
                                    f"command_timeout={p.command_timeout} s")
        elif frame is None:
            fail = (Status.NO_IMAGE, "no camera frame received yet on 'image'; publish frames "
                                     "before commands or send the image with the action goal")
        elif (p.frame_max_age > 0 and req.image is None
              and abs(frame.received - req.received) > p.frame_max_age):
            fail = (Status.NO_IMAGE, f"the nearest frame is {abs(frame.received - req.received):.2f}"
                                     f" s from the command, more than frame_max_age="
                                     f"{p.frame_max_age} s; is the camera running?")
        if fail is not None:
            return Outcome(req, Segmentation.failure(req.command, *fail), frame,
                           total_ms=_ms(t0))
        try:
            rgb = self._decode(frame.msg)
        except LensError as err:
            return Outcome(req, Segmentation.from_error(err, req.command), frame, total_ms=_ms(t0))
        frame.used = True
        return self._segment(req, frame, rgb, t0)

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
                out = Outcome(job.request, Segmentation.from_error(err, job.request.command),
                              job.frame)
            finally:
                self._busy = False
            self._finish(out)

    def _segment(self, req: Request, frame: Frame, rgb: np.ndarray, t0: float) -> Outcome:
        seg, shape = self.segmenter, rgb.shape[:2]
        reasoning = self.params.reasoning if req.reasoning is None else req.reasoning
        tm = time.monotonic()
        try:
            key = (id(frame.msg), frame.seq)
            if key != self._image_key:
                self._image_key = None
                _stage(req, "encode")
                seg.set_image(rgb)
                self._image_key = key
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
            self._image_key = None
            result = Segmentation.from_error(err, req.command, shape)
        out = Outcome(req, result, frame, rgb, model_ms=_ms(tm))
        if self._postprocess is not None and result.ok:
            self._postprocess(out)
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


def _stage(req: Request, name: str) -> None:
    if req.stage is not None:
        req.stage(name)


def _ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000.0
