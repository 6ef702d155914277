"""The ``segment`` action (lens_ros/action/Segment) on top of the inference worker.

A goal becomes a worker ``Request`` like a topic command, so the model is used by one thread
only. The server lives from configure to cleanup (as nav2's action servers) and accepts goals
only while the node is active, so a goal answered during deactivation still gets its result. Feedback streams the reasoning text as it is generated (plus the stage names); a cancel is
polled at every generated token and returns a result with status CANCELED. With
``action_preempt`` a new goal cancels the active one (as ros2/examples ``server_single_goal.py``);
without it goals queue with the topic commands.

Goal states: SUCCEEDED whenever the model (or the input checks) produced an answer, whatever its
``status``; CANCELED after a client cancel; ABORTED when preempted, dropped, timed out or the
node deactivated. The result always carries a LensResult whose ``status`` says why.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from rclpy.action import ActionServer, CancelResponse, GoalResponse

from lens_ros.action import Segment
from lens_ros.core import Segmentation, Status
from lens_ros.serving.requests import Outcome, Request

#: Goals in flight at once (queued or running); more are rejected. Each waiting goal holds one
#: executor thread, so the node's executor has more threads than this.
MAX_GOALS = 4
_ABORTED = (Status.NOT_READY, Status.DROPPED, Status.TIMEOUT, Status.CANCELED)
_REASONING = {Segment.Goal.REASONING_DEFAULT: None, Segment.Goal.REASONING_OFF: False,
              Segment.Goal.REASONING_ON: True}


@dataclass
class _Goal:
    """Bookkeeping of one goal in flight."""

    request: Request
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    canceled: bool = False  #: a client cancel was accepted
    preempted: bool = False  #: a newer goal replaced it (action_preempt)
    error: str = ""  #: a goal field is invalid (answered BAD_COMMAND without the model)


class SegmentActionServer:
    """Owns the rclpy ActionServer of one active lens_node.

    Arguments:
      node: the lens_node (rclpy Node).
      worker: returns the running ``InferenceWorker``, or None while the node is not active.
      to_message: builds the LensResult of an ``Outcome`` that bypassed the worker.
      preempt: returns the current ``action_preempt`` parameter.
      callback_group: a ReentrantCallbackGroup (cancel requests are served while goals wait).
    """

    def __init__(self, node, worker: Callable[[], object],
                 to_message: Callable[[Outcome], object], preempt: Callable[[], bool],
                 callback_group) -> None:
        self._worker, self._to_message, self._preempt = worker, to_message, preempt
        self._lock = threading.Lock()
        self._goals: dict[bytes, _Goal] = {}  # goal id -> state, while in flight
        self._active: bytes | None = None
        self._closing = False
        self._server = ActionServer(
            node, Segment, "segment", execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel,
            handle_accepted_callback=self._on_accepted, callback_group=callback_group)

    def _on_goal(self, goal) -> GoalResponse:
        """Accept a goal while the node is active and fewer than MAX_GOALS are in flight."""
        with self._lock:
            busy = len(self._goals) >= MAX_GOALS
        if self._closing or busy or self._worker() is None:
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, goal_handle) -> None:
        """Register the goal, preempt the active one if asked to, then execute it."""
        gid = bytes(goal_handle.goal_id.uuid)
        with self._lock:
            self._goals[gid] = self._make_goal(goal_handle)
            old = self._goals.get(self._active) if self._preempt() else None
            self._active = gid
            if old is not None:
                old.preempted = True
                old.request.cancel_reason = "preempted by a newer goal"
        worker = self._worker()
        if old is not None and worker is not None:
            worker.withdraw(old.request, Status.CANCELED, "preempted by a newer goal")
        goal_handle.execute()

    def _on_cancel(self, goal_handle) -> CancelResponse:
        """Accept every cancel: a queued goal is answered at once, a running one stops at the
        next generated token."""
        goal = self._goals.get(bytes(goal_handle.goal_id.uuid))
        if goal is not None:
            goal.canceled = True
            goal.request.cancel_reason = "canceled by the client"
            worker = self._worker()
            if worker is not None:
                worker.withdraw(goal.request, Status.CANCELED, "canceled by the client")
        return CancelResponse.ACCEPT

    def _make_goal(self, gh) -> _Goal:
        msg, feedback = gh.request, Segment.Feedback()

        def publish(stage: str, text: str | None = None) -> None:
            feedback.stage = stage
            if text is not None:
                feedback.reasoning_so_far = text
            gh.publish_feedback(feedback)

        def on_done(out: Outcome) -> None:
            goal.outcome = out
            goal.done.set()

        req = Request(command=msg.command, image=msg.image if msg.image.width > 0 else None,
                      reasoning=_REASONING.get(msg.reasoning),
                      stream=lambda text: publish("generate", text), stage=publish,
                      cancel=lambda: goal.canceled or goal.preempted or gh.is_cancel_requested,
                      on_done=on_done, source="action")
        goal = _Goal(req)
        if msg.reasoning not in _REASONING:
            goal.error = (f"reasoning={msg.reasoning} is not one of REASONING_DEFAULT (0), "
                          "REASONING_OFF (1), REASONING_ON (2)")
        return goal

    def _execute(self, gh) -> Segment.Result:
        """Hand the goal to the worker and wait for its one outcome."""
        gid = bytes(gh.goal_id.uuid)
        goal = self._goals[gid]
        gh.publish_feedback(Segment.Feedback(stage="queued"))
        worker = self._worker()
        if goal.error:
            goal.request.on_done(Outcome(goal.request, Segmentation.failure(
                goal.request.command, Status.BAD_COMMAND, goal.error)))
        elif worker is None:
            goal.request.on_done(Outcome(goal.request, Segmentation.failure(
                goal.request.command, Status.NOT_READY, "the node is not active")))
        elif not goal.done.is_set():
            worker.submit(goal.request)
        while not goal.done.wait(0.5):
            if self._closing:  # the worker answers everything when it stops; belt and braces
                goal.request.on_done(Outcome(goal.request, Segmentation.failure(
                    goal.request.command, Status.NOT_READY, "the node deactivated")))
        out = goal.outcome
        msg = out.message if out.message is not None else self._to_message(out)
        with self._lock:
            self._goals.pop(gid, None)
            if self._active == gid:
                self._active = None
        if goal.canceled and not goal.preempted:
            # the CANCELING transition happens just after our cancel callback returns
            end = time.monotonic() + 2.0
            while not gh.is_cancel_requested and time.monotonic() < end:
                time.sleep(0.005)
        status = out.result.status
        if status == Status.CANCELED and gh.is_cancel_requested and not goal.preempted:
            gh.canceled()
        elif status in _ABORTED or goal.preempted:
            gh.abort()
        else:
            gh.succeed()
        return Segment.Result(result=msg)

    def destroy(self, timeout: float = 5.0) -> None:
        """Refuse new goals, wait for in-flight ones to return, then destroy the server (at
        cleanup: the worker has answered every goal at deactivate)."""
        self._closing = True
        end = time.monotonic() + timeout
        while self._goals and time.monotonic() < end:
            time.sleep(0.02)
        self._server.destroy()
