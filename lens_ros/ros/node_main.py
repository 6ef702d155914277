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
    try:
        node = make_node()
    except (InvalidParameterTypeException, InvalidParameterValueException) as err:
        print(f"{name}: {err}; fix the parameter ({config_hint} documents each one)",
              file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=num_threads)
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
