"""The ROS side of ``lens-console``: one rclpy node spun in a background thread.

It keeps the newest camera frame (``image``) and overlay (``debug_image``: lens_node renders it
for every result while someone subscribes) as JPEG, the latest results and diagnostics, sends
``segment`` goals and forwards their feedback, and publishes browser audio as AudioChunk on
``audio``. Every change is pushed to :class:`EventHub` listeners (the Server-Sent Events).
"""
from __future__ import annotations

import collections
import itertools
import queue
import threading
import time

import cv2
import numpy as np

from lens_ros.ros.ask_format import diagnostic_lines, status_name

MAX_RESULTS = 20  #: results kept for a page that connects later


class EventHub:
    """Fan-out of (event name, JSON-able data) to every connected page (one queue each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: list[queue.Queue] = []

    def listen(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=500)
        with self._lock:
            self._queues.append(q)
        return q

    def forget(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._queues:
                self._queues.remove(q)

    def emit(self, name: str, data: dict) -> None:
        with self._lock:
            for q in self._queues:
                try:
                    q.put_nowait((name, data))
                except queue.Full:  # a stalled page loses events, the others do not wait
                    pass


def result_summary(msg) -> dict:
    """The fields of a LensResult a page shows (JSON-able)."""
    return {"command": msg.command, "status": status_name(msg.status),
            "box": [round(float(v), 1) for v in msg.box] if msg.has_box else None,
            "score": round(float(msg.score), 3), "object_score": round(float(msg.object_score), 2),
            "generate_ms": round(float(msg.generate_ms)), "total_ms": round(float(msg.total_ms)),
            "stamp": f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}",
            "frame_id": msg.header.frame_id, "reasoning": msg.reasoning, "answer": msg.answer,
            "error": msg.error, "received": time.time()}


class _Frame:
    """The newest Image of a topic, encoded to JPEG on demand (once per new frame)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._msg, self._jpeg, self.count = None, None, 0

    def put(self, msg) -> None:
        with self._lock:
            self._msg, self._jpeg = msg, None
            self.count += 1

    def jpeg(self) -> bytes | None:
        from lens_ros.conversions.image import image_to_rgb

        with self._lock:
            msg, cached = self._msg, self._jpeg
        if msg is None or cached is not None:
            return cached
        try:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_to_rgb(msg), cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 80])
        except Exception:  # a bad frame must not stop the console  # noqa: BLE001
            return None
        with self._lock:
            if self._msg is msg:
                self._jpeg = buf.tobytes()
        return buf.tobytes() if ok else None


class ConsoleBridge:
    """The console's rclpy node (call :meth:`close` to stop it)."""

    def __init__(self, hub: EventHub) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.action import ActionClient
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.executors import MultiThreadedExecutor
        from sensor_msgs.msg import Image

        from lens_ros.action import Segment
        from lens_ros.msg import AudioChunk, LensResult
        from lens_ros.ros.qos import AUDIO_QOS, RESULT_QOS, sensor_qos

        self.hub = hub
        self.node = rclpy.create_node("lens_console")
        self.Segment = Segment
        group = ReentrantCallbackGroup()
        self.frames = {"image": _Frame(), "debug": _Frame()}
        self.results: collections.deque = collections.deque(maxlen=MAX_RESULTS)
        self.diagnostics: dict = {}
        self._goals: dict[str, object] = {}
        self._ids = itertools.count(1)
        sub = self.node.create_subscription
        sub(Image, "image", self.frames["image"].put, sensor_qos(), callback_group=group)
        sub(Image, "debug_image", self._on_debug, sensor_qos(), callback_group=group)
        sub(LensResult, "result", self._on_result, RESULT_QOS, callback_group=group)
        sub(DiagnosticArray, "/diagnostics", self._on_diagnostics, RESULT_QOS,
            callback_group=group)
        self.action = ActionClient(self.node, Segment, "segment", callback_group=group)
        self.audio = self.node.create_publisher(AudioChunk, "audio", AUDIO_QOS)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="lens_console_ros", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except (ExternalShutdownException, KeyboardInterrupt):
            pass

    # -- inputs -------------------------------------------------------------------------------
    def _on_debug(self, msg) -> None:
        self.frames["debug"].put(msg)
        self.hub.emit("overlay", {"count": self.frames["debug"].count})

    def _on_result(self, msg) -> None:
        summary = result_summary(msg)
        self.results.appendleft(summary)
        self.hub.emit("result", summary)

    def _on_diagnostics(self, msg) -> None:
        lines = diagnostic_lines(msg)
        if lines:
            self.diagnostics = {"lines": lines, "received": time.time(),
                                "action_server": self.action.server_is_ready()}
            self.hub.emit("diagnostics", self.diagnostics)

    def state(self) -> dict:
        """Snapshot for a page that (re)connects."""
        return {"results": list(self.results), "diagnostics": self.diagnostics,
                "frames": {k: f.count for k, f in self.frames.items()},
                "action_server": self.action.server_is_ready()}

    # -- goals --------------------------------------------------------------------------------
    def send_goal(self, command: str, reasoning: int = 0) -> str:
        """Send a Segment goal; its feedback, acceptance and result arrive as events named
        ``feedback`` and ``goal`` with the returned id. Raises RuntimeError with no server."""
        if not self.action.wait_for_server(timeout_sec=3.0):
            raise RuntimeError("no lens_node 'segment' action server: is lens_node running "
                               "and active?")
        gid = f"g{next(self._ids)}"
        goal = self.Segment.Goal(command=command, reasoning=reasoning)
        fut = self.action.send_goal_async(goal, feedback_callback=lambda m: self.hub.emit(
            "feedback", {"goal": gid, "stage": m.feedback.stage,
                         "text": m.feedback.reasoning_so_far}))
        fut.add_done_callback(lambda f: self._accepted(gid, command, f))
        return gid

    def _accepted(self, gid: str, command: str, fut) -> None:
        handle = fut.result()
        if not handle.accepted:
            self.hub.emit("goal", {"goal": gid, "command": command, "state": "REJECTED"})
            return
        self._goals[gid] = handle
        handle.get_result_async().add_done_callback(lambda f: self._finished(gid, f))

    def _finished(self, gid: str, fut) -> None:
        from action_msgs.msg import GoalStatus

        self._goals.pop(gid, None)
        res = fut.result()
        names = {GoalStatus.STATUS_SUCCEEDED: "SUCCEEDED", GoalStatus.STATUS_CANCELED: "CANCELED",
                 GoalStatus.STATUS_ABORTED: "ABORTED"}
        self.hub.emit("goal", {"goal": gid, "state": names.get(res.status, str(res.status)),
                               "result": result_summary(res.result.result)})

    def cancel(self, gid: str) -> bool:
        handle = self._goals.get(gid)
        if handle is None:
            return False
        handle.cancel_goal_async()
        return True

    # -- audio --------------------------------------------------------------------------------
    def publish_audio(self, pcm16: np.ndarray, rate: int, pad_s: float = 0.6) -> int:
        """Publish mono int16 PCM (silence of ``pad_s`` added on both sides, so the speech
        node's VAD closes the utterance) as 100 ms AudioChunk messages; returns their number."""
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header

        from lens_ros.conversions.audio import pcm_to_chunks
        from lens_ros.msg import AudioChunk
        from lens_ros.speech.audio import pad_silence

        start = self.node.get_clock().now().nanoseconds * 1e-9
        chunks = pcm_to_chunks(pad_silence(pcm16, rate, pad_s), rate, 0.1, AudioChunk, Header,
                               Time, start, "browser_microphone")
        for msg in chunks:
            self.audio.publish(msg)
        return len(chunks)

    def close(self) -> None:
        """Stop the spin thread and release the node. The thread is joined before anything is
        destroyed: a process that exits while it still waits inside the middleware aborts
        ("terminate called without an active exception") instead of exiting 0."""
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.action.destroy()
        self.node.destroy_node()
