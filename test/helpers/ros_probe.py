"""A probe node for multi-process tests: its own rclpy context, node and executor."""
from __future__ import annotations

import time


class ProbeNode:
    """An in-test rclpy node in its own context, spun explicitly by the test."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        self.node = Node(name, context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def spin_until(self, condition, timeout: float = 20.0) -> bool:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True


def latest_diagnostic(arrays, prefix: str) -> dict:
    """Key/values (+ level, message) of the newest status whose name starts with ``prefix``.

    ``arrays``: DiagnosticArray messages, oldest first.
    """
    for arr in reversed(list(arrays)):
        for st in arr.status:
            if st.name.startswith(prefix):
                level = st.level[0] if isinstance(st.level, bytes) else st.level
                return {"level": level, "message": st.message,
                        **{kv.key: kv.value for kv in st.values}}
    return {}
