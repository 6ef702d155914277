"""The ``main()`` shared by our lifecycle nodes: init, build, autostart, spin, clean exit.

A node class given here needs an ``autostart`` parameter and a ``close()`` that releases
everything whatever the state (``lens_node`` and ``speech_node`` use it).
"""
from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn


def run_lifecycle_node(make_node: Callable[[], object], name: str, config_hint: str,
                       num_threads: int, args: list[str] | None = None) -> int:
    """Spin one lifecycle node until SIGINT; returns the process exit code.

    Arguments:
      make_node: builds the node (after ``rclpy.init``).
      name, config_hint: for the message when a parameter has the wrong type or range
        ("speech_node", "config/speech.yaml"); that case exits with 2, without a traceback.
      num_threads: threads of the MultiThreadedExecutor.
    """
    rclpy.init(args=args)
    node = executor = None
    try:
        try:
            node = make_node()
        except (InvalidParameterTypeException, InvalidParameterValueException) as err:
            print(f"{name}: {err}; fix the parameter ({config_hint} documents each one)",
                  file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor(num_threads=num_threads)
        executor.add_node(node)
        if node.get_parameter("autostart").value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
        executor.spin()
    except BaseException as err:  # noqa: B036 - a stop may surface as any rclpy error
        if not stopped_by_signal(err):
            raise
    finally:
        if node is not None:
            release_quietly(node.close)
        if executor is not None:
            release_quietly(executor.shutdown)
        if node is not None:
            release_quietly(node.destroy_node)
        release_quietly(rclpy.try_shutdown)
    return 0


def stopped_by_signal(err: BaseException) -> bool:
    """True when ``err`` is how a SIGINT/SIGTERM stop surfaced: Ctrl-C itself, the executor's
    shutdown, or any rclpy error raised because the context was shut down under a running
    transition or wait set (e.g. "failed to initialize wait set: the given context is not
    valid")."""
    return isinstance(err, (KeyboardInterrupt, ExternalShutdownException)) or not rclpy.ok()


def release_quietly(step: Callable[[], object]) -> None:
    """One release step at exit; after a stop the context may be gone under it (nothing left
    to release then), and a second Ctrl-C must not turn the stop into a traceback."""
    try:
        step()
    except BaseException as err:  # noqa: B036
        if not stopped_by_signal(err):
            raise
