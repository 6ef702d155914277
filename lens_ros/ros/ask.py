"""``lens-ask``: send commands to lens_node from a terminal, without a ROS install.

``lens-ask "the red cube"`` sends one goal of the ``segment`` action (lossless: every goal is
acknowledged), streams the reasoning as feedback arrives and prints the status, box, scores and
timings; with no command it opens a prompt with history (``:status``, ``:quit``). Ctrl-C while
a goal runs cancels it (status CANCELED). ``--topic`` publishes on ``command`` instead and
waits for the matching ``result``; ``--status`` prints the node's diagnostics. The exit code
follows the result's status (table in lens_ros/ros/ask_format.py and docs/operator.md).
"""
from __future__ import annotations

import argparse
import collections
import signal
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lens_ros.ros.ask_format import (EXIT_NO_ANSWER, EXIT_OK, EXIT_USAGE, diagnostic_lines,
                                     exit_code, format_result, status_name)

REASONING = {"default": 0, "off": 1, "on": 2}  # Segment.Goal.REASONING_*
HISTORY = Path.home() / ".lens_ask_history"


class NoAnswer(Exception):
    """No node answered within the timeout (message says which interface and what to check)."""


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lens-ask", description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="exit codes: 0 OK/TRACKED/NO_DEPTH, 2 usage, 3 no answer "
        "(no node, rejected, timeout), 10+status otherwise "
        "(11 NO_TARGET ... 17 CANCELED). ROS arguments go after "
        "--ros-args, e.g. --ros-args -r __ns:=/arm")
    p.add_argument("command", nargs="*", help="what to segment; none: interactive prompt")
    p.add_argument("--image", default="", help="segment this picture (sent in the goal) "
                   "instead of the newest camera frame")
    p.add_argument("--out", default="", help="write the overlay (mask, box, command) to this PNG")
    p.add_argument("--topic", action="store_true", help="publish on 'command' and wait for the "
                   "matching 'result' instead of using the segment action")
    p.add_argument("--status", action="store_true", help="print the node's diagnostics and exit")
    p.add_argument("--reasoning", choices=tuple(REASONING), default="default",
                   help="reasoning prompt for action goals (default: the node's parameter)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the node "
                   "and for each answer (default 30)")
    p.add_argument("--frame-id", default="image", help="frame_id of the --image goal")
    p.add_argument("--quiet", action="store_true", help="do not stream the reasoning")
    return p


class AskClient:
    """One rclpy node with the action client, command publisher and subscriptions of lens-ask."""

    def __init__(self, timeout: float, keep_frames: bool) -> None:
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor

        from lens_ros.action import Segment

        self.node = rclpy.create_node("lens_ask")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.timeout = timeout
        self.Segment = Segment
        self.action = ActionClient(self.node, Segment, "segment")
        self.frames: collections.OrderedDict = collections.OrderedDict()  # (stamp, id) -> msg
        self._results: list = []
        self._diagnostics: list = []
        self._command_pub = None
        self.interrupted = False
        if keep_frames:  # the camera frames the node may answer on, for --out overlays
            from sensor_msgs.msg import Image

            from lens_ros.ros.qos import sensor_qos
            self.node.create_subscription(Image, "image", self._on_frame, sensor_qos(depth=30))

    def _on_frame(self, msg) -> None:
        self.frames[(msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)] = msg
        while len(self.frames) > 60:
            self.frames.popitem(last=False)

    def spin_until(self, done, timeout: float) -> bool:
        """Spin until ``done()``, ``timeout`` seconds or a Ctrl-C (sets ``interrupted``)."""
        end = time.monotonic() + timeout
        while not done() and not self.interrupted:
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    # -- the segment action -------------------------------------------------------------------
    def segment(self, command: str, image=None, reasoning: int = 0, stream=None):
        """Run one goal; returns (LensResult or None, goal state name). Ctrl-C cancels it."""
        from action_msgs.msg import GoalStatus

        if not self.action.wait_for_server(timeout_sec=self.timeout):
            raise NoAnswer(f"no lens_node answered on action '{self.action._action_name}' within"
                           f" {self.timeout:g} s: is lens_node running and active, with the same"
                           " ROS_DOMAIN_ID and namespace?")
        goal = self.Segment.Goal(command=command, reasoning=reasoning)
        if image is not None:
            goal.image = image
        printer = _ReasoningPrinter(stream)
        sent = self.action.send_goal_async(goal, feedback_callback=printer.feed)
        with _sigint_sets(self):
            if not self.spin_until(sent.done, self.timeout) and not sent.done():
                if self.interrupted:
                    return None, "NOT SENT"
                raise NoAnswer(f"lens_node did not acknowledge the goal within {self.timeout:g} s")
            handle = sent.result()
            if not handle.accepted:
                raise NoAnswer("lens_node rejected the goal (not active, or 4 goals in flight)")
            result = handle.get_result_async()
            finished = self.spin_until(result.done, self.timeout)
            if not finished:
                if not self.interrupted:
                    print(f"\nlens-ask: no result within {self.timeout:g} s; canceling",
                          file=sys.stderr)
                self.interrupted = False  # a second Ctrl-C while canceling still counts
                handle.cancel_goal_async()
                self.spin_until(result.done, 10.0)
        printer.end()
        if not result.done():
            raise NoAnswer("the goal was canceled but lens_node sent no result within 10 s")
        res = result.result()
        names = {getattr(GoalStatus, n): n[len("STATUS_"):] for n in dir(GoalStatus)
                 if n.startswith("STATUS_")}
        return res.result.result, names.get(res.status, str(res.status))

    # -- the command topic --------------------------------------------------------------------
    def topic(self, command: str):
        """Publish ``command`` on ``command`` (COMMAND_QOS); returns its LensResult."""
        from std_msgs.msg import String

        from lens_ros.msg import LensResult
        from lens_ros.ros.qos import COMMAND_QOS, RESULT_QOS

        if self._command_pub is None:
            self._command_pub = self.node.create_publisher(String, "command", COMMAND_QOS)
            self.node.create_subscription(LensResult, "result", self._results.append, RESULT_QOS)
        pub = self._command_pub
        if not self.spin_until(lambda: pub.get_subscription_count() > 0, self.timeout):
            raise NoAnswer(f"nothing subscribes to '{pub.topic_name}' after {self.timeout:g} s: "
                           "is lens_node running, with the same ROS_DOMAIN_ID and namespace?")
        self.spin_until(lambda: False, 0.3)  # let the result subscription match as well
        start, text = len(self._results), command.strip()
        pub.publish(String(data=command))
        with _sigint_sets(self):
            self.spin_until(lambda: any(m.command == text for m in self._results[start:]),
                            self.timeout)
        for m in self._results[start:]:
            if m.command == text:
                return m
        raise NoAnswer(f"no result for {text!r} within {self.timeout:g} s")

    # -- diagnostics --------------------------------------------------------------------------
    def status(self) -> list[str]:
        """The newest lens_node diagnostics as readable lines."""
        from diagnostic_msgs.msg import DiagnosticArray

        from lens_ros.ros.qos import RESULT_QOS

        if not hasattr(self, "_diag_sub"):
            self._diag_sub = self.node.create_subscription(
                DiagnosticArray, "/diagnostics", self._diagnostics.append, RESULT_QOS)
        start = len(self._diagnostics)
        found = lambda: any(diagnostic_lines(a) for a in self._diagnostics[start:])  # noqa: E731
        if not self.spin_until(found, self.timeout):
            raise NoAnswer(f"no lens_node diagnostics on /diagnostics within {self.timeout:g} s")
        return next(diagnostic_lines(a) for a in reversed(self._diagnostics) if diagnostic_lines(a))

    def close(self) -> None:
        self.action.destroy()
        self.executor.shutdown()
        self.node.destroy_node()


class _sigint_sets:
    """While a goal runs, Ctrl-C sets ``client.interrupted`` instead of raising."""

    def __init__(self, client: AskClient) -> None:
        self.client = client

    def __enter__(self):
        self.client.interrupted = False
        self.old = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, *_):
        self.client.interrupted = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.old)


class _ReasoningPrinter:
    """Prints the growth of ``reasoning_so_far`` as feedback arrives."""

    def __init__(self, stream) -> None:
        self.stream, self.shown, self.started = stream, "", False

    def feed(self, msg) -> None:
        text = msg.feedback.reasoning_so_far
        if self.stream is None or not text or text == self.shown:
            return
        if not self.started:
            self.stream.write("reasoning: ")
            self.started = True
        if text.startswith(self.shown):
            self.stream.write(text[len(self.shown):])
        else:
            self.stream.write("\n           " + text)
        self.shown = text
        self.stream.flush()

    def end(self) -> None:
        if self.stream is not None and self.started:
            self.stream.write("\n")
            self.stream.flush()


def _load_image(path: str, frame_id: str, clock):
    from lens_ros.conversions.image import make_header, numpy_to_image, rclpy_types
    from lens_ros.data.items import BadRecordError
    from lens_ros.data.sources import read_rgb

    try:
        rgb = read_rgb(path)
    except BadRecordError as err:
        raise ValueError(str(err)) from None
    types = rclpy_types()
    header = make_header(types, clock.now().nanoseconds, frame_id)
    return numpy_to_image(rgb, "rgb8", header, types)


def write_overlay(path: str, result, source_image) -> str:
    """Draw the result on its frame (``source_image``: an Image message or None) into ``path``."""
    from lens_ros.conversions.image import image_to_mask, image_to_rgb
    from lens_ros.visualize import overlay

    note = ""
    mask = image_to_mask(result.mask) if result.mask.width else None
    if source_image is not None:
        rgb = image_to_rgb(source_image)
    else:  # the frame never reached us (best effort): draw on a gray canvas of its size
        h, w = (mask.shape if mask is not None else (240, 320))
        rgb = np.full((h, w, 3), 96, np.uint8)
        note = " (the camera frame was not received: gray background)"
    status = "" if result.status == 0 else status_name(result.status)
    img = overlay(rgb, mask, tuple(result.box) if result.has_box else None, result.command,
                  result.answer, status)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return note


def run_one(client: AskClient, args, command: str) -> int:
    """Send one command (action or topic), print the answer, write the overlay; exit code."""
    image = None
    if args.image:
        image = _load_image(args.image, args.frame_id, client.node.get_clock())
    if args.out and image is None:  # receive camera frames before the node picks one
        client.spin_until(lambda: bool(client.frames), client.timeout)
    if args.topic:
        result, state = client.topic(command), ""
    else:
        result, state = client.segment(command, image, REASONING[args.reasoning],
                                       None if args.quiet else sys.stdout)
        if result is None:
            print("lens-ask: interrupted before the goal was sent")
            return EXIT_NO_ANSWER
    streamed = not (args.topic or args.quiet)
    print(format_result(result, state, show_answer=not streamed), flush=True)
    if args.out:
        source = image
        if source is None:
            h = result.header
            key = (h.stamp.sec, h.stamp.nanosec, h.frame_id)
            client.spin_until(lambda: key in client.frames, 1.0)
            source = client.frames.get(key)
        note = write_overlay(args.out, result, source)
        print(f"overlay  {args.out}{note}", flush=True)
    return exit_code(result.status)


def interactive(client: AskClient, args) -> int:
    """A prompt with history; returns the exit code of the last answer."""
    try:
        import readline
        readline.set_history_length(1000)
        if HISTORY.exists():
            readline.read_history_file(HISTORY)
    except (ImportError, OSError):
        readline = None
    print("lens-ask: type a command (':status' diagnostics, ':quit' or Ctrl-D ends; "
          "Ctrl-C cancels a running goal)", flush=True)
    rc = EXIT_OK
    while True:
        try:
            line = input("lens> ").strip()
        except EOFError:
            print()
            break
        except KeyboardInterrupt:
            print()
            continue
        if not line:
            continue
        if line in (":quit", ":q", ":exit"):
            break
        try:
            if line == ":status":
                print("\n".join(client.status()), flush=True)
            else:
                rc = run_one(client, args, line)
        except (NoAnswer, ValueError) as err:
            print(f"lens-ask: {err}", flush=True)
            rc = EXIT_NO_ANSWER
    if readline is not None:
        try:
            readline.write_history_file(HISTORY)
        except OSError:
            pass
    return rc


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    argv = sys.argv if argv is None else ["lens-ask", *argv]
    args = make_parser().parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    client = AskClient(args.timeout, keep_frames=bool(args.out) and not args.image)
    try:
        if args.status:
            print("\n".join(client.status()))
            return EXIT_OK
        if not args.command:
            return interactive(client, args)
        return run_one(client, args, " ".join(args.command))
    except NoAnswer as err:
        print(f"lens-ask: {err}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except ValueError as err:
        print(f"lens-ask: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("lens-ask: interrupted", file=sys.stderr)
        return EXIT_NO_ANSWER
    finally:
        client.close()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
