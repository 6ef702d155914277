"""Test harness shared by every test module.

ROS isolation is set up at import time, before any test module imports rclpy: a random domain,
loopback-only discovery, the shared-memory Fast DDS profile and a private log directory.
Fixtures:
  ``rclpy_node``       an in-process probe node with its own context (node, ctx)
  ``spawn``            start ``python -c CODE`` or ``python -m MOD`` subprocesses, stopped with SIGINT
  ``tiny_model_dir``   a saved random-weight LENS checkpoint of the ``tiny`` preset (session-wide)
  ``bundled_image``    test/data/tabletop.png as HxWx3 uint8 RGB
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"

# --- ROS isolation, before anything imports rclpy -------------------------------------------
os.environ["ROS_DOMAIN_ID"] = str(random.Random(os.getpid() ^ int(time.time())).randint(1, 101))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="lens_ros_log_")
os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"
os.environ["PYTHONUNBUFFERED"] = "1"
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "lens_fastdds.xml")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 cores: subprocesses must not oversubscribe
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def rclpy_node():
    """An in-process probe node in its own context; yields (node, context)."""
    import rclpy
    from rclpy.node import Node

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = Node(f"test_probe_{os.getpid()}", context=ctx)
    yield node, ctx
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT, wait, then kill; closes the pipe so no ResourceWarning is left behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture
def spawn(tmp_path):
    """Start subprocesses with the venv's python; output goes to a log file returned as `.log`.

    ``spawn(["-m", "lens_ros.ros.lens_node", "--ros-args", ...])`` or ``spawn(code="...")``.
    """
    procs = []

    def _spawn(args: list[str] | None = None, code: str | None = None, env: dict | None = None):
        argv = [sys.executable] + (["-c", code] if code is not None else list(args or []))
        log = tmp_path / f"proc{len(procs)}.log"
        fh = open(log, "w")
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=str(tmp_path),
                                env={**os.environ, **(env or {})})
        fh.close()
        proc.log = log
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        stop_process(proc)


def spin_until(node_or_executor, condition, timeout: float = 20.0, ctx=None) -> bool:
    """Spin a probe node until ``condition()`` is true or ``timeout`` seconds pass."""
    from rclpy.executors import SingleThreadedExecutor

    if hasattr(node_or_executor, "spin_once") and not hasattr(node_or_executor, "get_name"):
        ex = node_or_executor
    else:
        ex = SingleThreadedExecutor(context=ctx or node_or_executor.context)
        ex.add_node(node_or_executor)
    end = time.monotonic() + timeout
    try:
        while not condition():
            if time.monotonic() > end:
                return False
            ex.spin_once(timeout_sec=0.05)
        return True
    finally:
        if ex is not node_or_executor:
            ex.remove_node(node_or_executor)
            ex.shutdown()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A ``tiny``-preset LENS checkpoint with random weights, saved once per test session."""
    from lens_ros.model.presets import save_preset_checkpoint

    out = tmp_path_factory.mktemp("tiny_lens")
    save_preset_checkpoint("tiny", out, seed=0)
    return out


@pytest.fixture(scope="session")
def bundled_image():
    """test/data/tabletop.png as an HxWx3 uint8 RGB array."""
    import cv2

    bgr = cv2.imread(str(DATA / "tabletop.png"), cv2.IMREAD_COLOR)
    assert bgr is not None, "test/data/tabletop.png is missing"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
