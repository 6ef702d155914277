"""Test-side helpers for the lens_node tests: start the node, talk to it over real DDS.

``LensNodeProcess`` starts ``lens_node`` (the console script) in a subprocess; ``NodeClient`` is
an in-process probe with its own rclpy context that publishes frames and commands, records every
output of the node, drives its lifecycle and parameters, and calls its ``segment`` action.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import stop_process
from helpers.ros_probe import ProbeNode, latest_diagnostic

NODE = "lens_node"


def long_talker_checkpoint(tiny_dir: Path, out_dir: Path) -> Path:
    """A copy of the tiny checkpoint that generates until ``max_new_tokens``.

    The random-weight tiny model ends its answer at the first token, which leaves nothing for a
    cancel to interrupt; with an end-of-text id it never produces (<|box_start|>) it talks on.
    """
    out = out_dir / "tiny_long_talker"
    if not out.exists():
        shutil.copytree(tiny_dir, out)
        cfg_path = out / "generation_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["eos_token_id"] = [5]
        cfg_path.write_text(json.dumps(cfg))
    return out


class LensNodeProcess:
    """``lens_node`` in a subprocess (the installed console script, or ``python -c code``),
    output in ``log``."""

    def __init__(self, log_dir: Path, params: dict, remaps: dict | None = None,
                 code: str | None = None) -> None:
        if code is None:
            argv = [str(Path(sys.prefix) / "bin" / "lens_node"), "--ros-args"]
        else:  # python -c CODE, for a node process prepared by the test
            argv = [sys.executable, "-c", code, "--ros-args"]
        for key, value in params.items():
            argv += ["-p", f"{key}:={_param_text(value)}"]
        for src, dst in (remaps or {}).items():
            argv += ["-r", f"{src}:={dst}"]
        self.log = log_dir / "lens_node.log"
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                         cwd=str(log_dir))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of the node process in MB."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS line")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        stop_process(self.proc)
        return self.proc.returncode


def _param_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


@contextlib.contextmanager
def running_node(work: Path, params: dict, client_name: str, wait_active: bool = True,
                 ns: str = "", **process_kwargs):
    """Start lens_node and a NodeClient; on exit close both and check the node exited with 0.

    ``ns``: run the node in this namespace, so that nodes of other test modules still shutting
    down in the same ROS domain cannot match its topics.
    """
    if ns:
        process_kwargs["remaps"] = {"__ns": f"/{ns}", **process_kwargs.get("remaps", {})}
    proc = LensNodeProcess(work, params, **process_kwargs)
    client = NodeClient(client_name, ns=ns)
    try:
        if wait_active:
            client.wait_active()
        yield proc, client
    finally:
        client.close()
        rc = proc.stop()
        assert rc == 0, f"lens_node exited with {rc}:\n{proc.output()[-3000:]}"


class NodeClient(ProbeNode):
    """A probe node (own context) wired to every interface of one lens_node."""

    def __init__(self, name: str = "lens_test_client", ns: str = "",
                 camera_qos: bool = False) -> None:
        """``camera_qos``: publish frames best effort (keep last 1), as a camera driver does."""
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState, GetState
        from rcl_interfaces.srv import SetParameters
        from rclpy.action import ActionClient
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from lens_ros.action import Segment
        from lens_ros.msg import LensResult

        super().__init__(name)
        reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                              history=HistoryPolicy.KEEP_LAST, depth=50)
        prefix = f"{ns}/" if ns else ""
        from rclpy.qos import qos_profile_sensor_data

        self.image_pub = self.node.create_publisher(
            Image, f"{prefix}image", qos_profile_sensor_data if camera_qos else reliable)
        from lens_ros.ros.qos import COMMAND_QOS

        # the documented publisher profile: a burst reaches the node whole
        self.command_pub = self.node.create_publisher(String, f"{prefix}command", COMMAND_QOS)
        # every output as (receive time, message)
        self.results, self.masks, self.reasonings, self.debug = [], [], [], []
        self.frames_sent = 0  #: frames this client published (the node counts what it received)
        self.diagnostics = []
        from lens_ros.ros.qos import RESULT_QOS

        self._record(LensResult, f"{prefix}result", self.results, RESULT_QOS)
        self._record(Image, f"{prefix}mask", self.masks, reliable)
        self._record(String, f"{prefix}reasoning", self.reasonings, reliable)
        self._record(DiagnosticArray, "/diagnostics", self.diagnostics, reliable)
        self._debug_sub = None
        self._reliable = reliable
        node_path = f"/{prefix}{NODE}"
        self.change_state_cli = self.node.create_client(ChangeState, f"{node_path}/change_state")
        self.get_state_cli = self.node.create_client(GetState, f"{node_path}/get_state")
        self.set_params_cli = self.node.create_client(SetParameters,
                                                      f"{node_path}/set_parameters")
        self.action = ActionClient(self.node, Segment, f"{prefix}segment")
        self.Segment = Segment

    def _record(self, msg_type, topic, sink, qos):
        self.node.create_subscription(msg_type, topic,
                                      lambda m: sink.append((time.monotonic(), m)), qos)

    def watch_debug_image(self) -> None:
        """Subscribe to debug_image (the node only renders it while someone listens)."""
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        if self._debug_sub is None:  # the node publishes it best effort, as a camera stream
            self._debug_sub = self.node.create_subscription(
                Image, "debug_image", lambda m: self.debug.append((time.monotonic(), m)),
                qos_profile_sensor_data)

    def close(self) -> None:
        self.action.destroy()
        super().close()

    def wait_future(self, future, timeout: float = 20.0):
        assert self.spin_until(future.done, timeout), "no answer from lens_node in time"
        return future.result()

    # -- lifecycle and parameters -------------------------------------------------------------
    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        assert self.get_state_cli.wait_for_service(timeout_sec=30), "lens_node did not come up"
        return self.wait_future(self.get_state_cli.call_async(GetState.Request())) \
            .current_state.label

    def change(self, transition: str, timeout: float = 60.0) -> bool:
        """Trigger a transition by label ('configure', 'activate', ...); True on success."""
        from lifecycle_msgs.srv import ChangeState

        assert self.change_state_cli.wait_for_service(timeout_sec=30)
        req = ChangeState.Request()
        req.transition.label = transition
        return self.wait_future(self.change_state_cli.call_async(req), timeout).success

    def set_params(self, **values) -> list:
        """Set parameters on the node; returns the SetParametersResult list."""
        from rclpy.parameter import Parameter

        from rcl_interfaces.srv import SetParameters

        assert self.set_params_cli.wait_for_service(timeout_sec=30)
        req = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self.wait_future(self.set_params_cli.call_async(req)).results

    def wait_active(self, timeout: float = 60.0) -> None:
        """Wait until the node is active and its topics are matched with ours."""
        end = time.monotonic() + timeout
        assert self.spin_until(lambda: self.state() == "active" or time.monotonic() > end,
                               timeout), "lens_node did not become active"
        assert self.state() == "active", "lens_node did not become active"
        self.wait_matched()

    def wait_matched(self, timeout: float = 20.0) -> None:
        assert self.spin_until(lambda: self.image_pub.get_subscription_count() > 0
                               and self.command_pub.get_subscription_count() > 0, timeout), \
            "lens_node's image/command subscriptions are not matched"
        assert self.action.wait_for_server(timeout_sec=timeout), "segment action not available"

    # -- topics -------------------------------------------------------------------------------
    def publish_image(self, msg) -> None:
        self.image_pub.publish(msg)
        self.frames_sent += 1

    def counter(self, key: str) -> int:
        """An integer counter of the node's newest /diagnostics status (-1 before the first)."""
        return int(self.latest_diagnostic().get(key, -1))

    def wait_counter(self, key: str, at_least: int, timeout: float = 20.0) -> bool:
        """Spin until the node's counter ``key`` reaches ``at_least``."""
        return self.spin_until(lambda: self.counter(key) >= at_least, timeout)

    def fresh_diagnostic(self, timeout: float = 20.0) -> dict:
        """Wait for the node's next /diagnostics message and return its key/values."""
        n = len(self.diagnostics)
        assert self.spin_until(lambda: len(self.diagnostics) > n and self.latest_diagnostic(),
                               timeout), "no /diagnostics from lens_node"
        return self.latest_diagnostic()

    def publish_frame(self, msg, timeout: float = 20.0) -> None:
        """Publish a frame and wait until the node counted it (``frames_received`` on
        /diagnostics grew past its value before the publish)."""
        base = int(self.fresh_diagnostic(timeout).get("frames_received", 0))
        self.publish_image(msg)
        assert self.wait_counter("frames_received", base + 1, timeout), \
            f"the node did not count the frame ({self.counter('frames_received')} <= {base})"

    def command(self, text: str) -> None:
        from std_msgs.msg import String

        self.command_pub.publish(String(data=text))

    def results_for(self, text: str) -> list:
        return [m for _, m in self.results if m.command == text]

    def ask(self, text: str, timeout: float = 30.0):
        """Publish a command and return its (single) LensResult."""
        start = len(self.results)
        self.command(text)
        assert self.spin_until(lambda: any(m.command == text.strip()
                                           for _, m in self.results[start:]), timeout), \
            f"no result for command {text!r}"
        return next(m for _, m in self.results[start:] if m.command == text.strip())

    def latest_diagnostic(self) -> dict:
        """The key/values of the newest lens_node diagnostic status."""
        return latest_diagnostic((arr for _, arr in self.diagnostics), NODE)

    # -- action -------------------------------------------------------------------------------
    def send_goal(self, command: str, image=None, reasoning: int = 0):
        """Send a Segment goal; returns (goal_handle, feedback list)."""
        goal = self.Segment.Goal(command=command, reasoning=reasoning)
        if image is not None:
            goal.image = image
        feedback = []
        fut = self.action.send_goal_async(goal, feedback_callback=lambda m: feedback.append(
            m.feedback))
        return self.wait_future(fut), feedback


def make_image(h: int, w: int, stamp: tuple[int, int] = (1, 2), frame_id: str = "camera",
               seed: int = 0, encoding: str = "rgb8"):
    """A sensor_msgs/Image of random pixels with the given header (rclpy class)."""
    from lens_ros.conversions.image import make_header, numpy_to_image, rclpy_types

    types = rclpy_types()
    rng = np.random.default_rng(seed)
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4}[encoding]
    arr = rng.integers(0, 256, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
    header = make_header(types, stamp[0] * 1_000_000_000 + stamp[1], frame_id)
    return numpy_to_image(arr, encoding, header, types)


def raw_image(height=4, width=4, encoding="rgb8", step=None, data=b"", stamp=(1, 0),
              frame_id="camera"):
    """A sensor_msgs/Image with arbitrary (possibly inconsistent) fields."""
    from sensor_msgs.msg import Image

    msg = Image(height=height, width=width, encoding=encoding,
                step=step if step is not None else width * 3, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = frame_id
    return msg
