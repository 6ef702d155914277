"""The operator tools end to end, each in its own process over real DDS: ``lens-camera
--synthetic`` -> ``lens_node`` (the demo model) -> ``lens-ask`` / ``lens-console`` (driven by a
real headless Chromium) / ``lens-ask`` in a tmux terminal.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, stop_process
from helpers.browser import Browser, chromium_path
from helpers.node_client import long_talker_checkpoint, running_node

pytestmark = pytest.mark.ros

NS = "optools"
ROS_NS = ["--ros-args", "-r", f"__ns:=/{NS}"]
DEMO = {"model_path": str(REPO / "models" / "lens-demo"), "reasoning": True,
        "max_new_tokens": 48}
COMMAND = "the red object"  # scene 0 of the synthetic test split has one red object


def tool(log: Path, module: str, *args: str, ns: list[str] = ROS_NS) -> subprocess.Popen:
    """Start ``python -m lens_ros.ros.<module> args`` with output (stdout+stderr) in ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", f"lens_ros.ros.{module}", *args, *ns],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=str(log.parent))


def wait_text(log: Path, pattern: str, timeout: float) -> re.Match | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = re.search(pattern, log.read_text(errors="replace"), re.M)
        if m:
            return m
        time.sleep(0.1)
    return None


def camera_stamps(log: Path) -> set[str]:
    return set(re.findall(r"^frame \d+ (\S+ \d+\.\d+)$", log.read_text(), re.M))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(work dir, camera log): lens_node on the demo model and lens-camera --synthetic."""
    work = tmp_path_factory.mktemp("operator_tools")
    camera = tool(work / "camera.log", "camera", "--synthetic", "--rate", "5", "--verbose")
    try:
        with running_node(work, DEMO, "operator_probe", ns=NS) as (_, client):
            assert wait_text(work / "camera.log", r"^frame \d+", 30), "camera published nothing"
            yield work, work / "camera.log"
    finally:
        stop_process(camera)
        assert camera.returncode == 0, (work / "camera.log").read_text()


def test_camera_missing_source_is_one_line_and_exit_2(tmp_path):
    for source in ("/dev/video97", str(tmp_path / "missing.mp4"), str(tmp_path)):
        res = subprocess.run([sys.executable, "-m", "lens_ros.ros.camera", source],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lens-camera: "), res.stderr


def test_exit_codes_follow_the_status_one_code_each():
    from lens_ros.core import Status
    from lens_ros.ros.ask_format import EXIT_NO_ANSWER, EXIT_USAGE, exit_code

    codes = {s: exit_code(s) for s in Status}
    assert {s for s, c in codes.items() if c == 0} == {s for s in Status if s.is_success}
    failing = [c for c in codes.values() if c]
    assert len(set(failing)) == len(failing) and min(failing) > max(EXIT_USAGE, EXIT_NO_ANSWER)
    assert codes[Status.CANCELED] == 17 and codes[Status.NO_TARGET] == 11
    assert all(c < 126 for c in codes.values())  # below the shell's reserved codes


CALIBRATION = """image_width: 320
image_height: 240
camera_name: bench_cam
camera_matrix: {rows: 3, cols: 3, data: [300.0, 0.0, 160.0, 0.0, 301.0, 120.0, 0.0, 0.0, 1.0]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [0.1, -0.2, 0.0, 0.0, 0.0]}
rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
projection_matrix: {rows: 3, cols: 4, data: [300, 0, 160, 0, 0, 301, 120, 0, 0, 0, 1, 0]}
"""


def test_calibration_yaml_is_read_and_bad_files_are_named(tmp_path):
    from lens_ros.ros.camera_sources import SourceError, load_calibration

    good = tmp_path / "cam.yaml"
    good.write_text(CALIBRATION)
    cal = load_calibration(good)
    assert (cal.width, cal.height, cal.camera_name) == (320, 240, "bench_cam")
    assert cal.k[0] == 300.0 and cal.k[4] == 301.0 and len(cal.p) == 12 and cal.d[1] == -0.2
    bad = tmp_path / "bad.yaml"
    bad.write_text(CALIBRATION.replace("data: [300.0, 0.0, 160.0,", "data: ["))
    with pytest.raises(SourceError, match="camera_matrix.data"):
        load_calibration(bad)
    with pytest.raises(SourceError, match="does not exist"):
        load_calibration(tmp_path / "missing.yaml")


def test_synthetic_camera_publishes_image_depth_and_camera_info_with_one_header(tmp_path):
    from helpers.ros_probe import ProbeNode
    from sensor_msgs.msg import CameraInfo, Image

    from lens_ros.ros.qos import sensor_qos

    probe = ProbeNode("camera_probe")
    got = {"image": [], "depth": [], "camera_info": []}
    for topic, cls in (("image", Image), ("depth", Image), ("camera_info", CameraInfo)):
        probe.node.create_subscription(cls, f"/camsyn/{topic}", got[topic].append,
                                       sensor_qos(depth=50))
    proc = tool(tmp_path / "cam.log", "camera", "--synthetic", "--rate", "10", "--size", "96",
                "--frame-id", "cam_syn", ns=["--ros-args", "-r", "__ns:=/camsyn"])
    try:
        assert probe.spin_until(lambda: min(len(v) for v in got.values()) >= 3, 30), \
            (tmp_path / "cam.log").read_text()
    finally:
        stop_process(proc)
        probe.close()
    key = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id)  # noqa: E731
    common = {key(m) for m in got["image"]} & {key(m) for m in got["depth"]} \
        & {key(m) for m in got["camera_info"]}
    assert common and all(k[2] == "cam_syn" for k in common)
    img, depth, info = got["image"][0], got["depth"][0], got["camera_info"][0]
    assert (img.encoding, img.width, img.height) == ("rgb8", 96, 96)
    assert (depth.encoding, depth.width, depth.height) == ("32FC1", 96, 96)
    assert (info.width, info.height) == (96, 96) and info.k[0] > 0 and info.k[2] == 47.5
    assert proc.returncode == 0


def test_camera_stops_cleanly_on_sigterm_and_sigint(tmp_path):
    for sig in (signal.SIGTERM, signal.SIGINT):
        log = tmp_path / f"cam_{sig.name}.log"
        proc = tool(log, "camera", str(REPO / "test" / "data" / "tabletop.png"), "--verbose",
                    ns=["--ros-args", "-r", "__ns:=/camstop"])
        assert wait_text(log, r"^frame 2 ", 30), log.read_text()
        proc.send_signal(sig)
        assert proc.wait(20) == 0
        assert "Traceback" not in log.read_text()


def test_ask_without_node_times_out_with_a_clear_message(tmp_path):
    res = subprocess.run([sys.executable, "-m", "lens_ros.ros.ask", "the red cube", "--timeout",
                          "2", "--ros-args", "-r", "__ns:=/nobody_here"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 3
    assert "no lens_node answered on action" in res.stderr and "within 2 s" in res.stderr
    assert "Traceback" not in res.stderr


def test_camera_node_ask_prints_reasoning_and_a_result_on_a_camera_frame(stack):
    work, camera_log = stack
    png = work / "ask.png"
    res = subprocess.run([sys.executable, "-m", "lens_ros.ros.ask", COMMAND, "--out", str(png),
                          *ROS_NS], capture_output=True, text=True, timeout=120, cwd=work)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^reasoning: <think>.+", res.stdout, re.M), res.stdout
    assert re.search(r"^status +OK +\(goal SUCCEEDED\)", res.stdout, re.M), res.stdout
    assert re.search(r"^box +\[", res.stdout, re.M) and "timings  generate" in res.stdout
    frame = re.search(r"^frame +(\S+) @ (\d+\.\d+)$", res.stdout, re.M)
    assert frame and f"{frame[1]} {frame[2]}" in camera_stamps(camera_log), res.stdout
    assert png.stat().st_size > 1000 and "gray background" not in res.stdout


def test_ask_topic_and_status(stack):
    work, camera_log = stack
    res = subprocess.run([sys.executable, "-m", "lens_ros.ros.ask", "--topic", COMMAND, *ROS_NS],
                         capture_output=True, text=True, timeout=120, cwd=work)
    assert res.returncode == 0, res.stdout + res.stderr
    frame = re.search(r"^frame +(\S+) @ (\d+\.\d+)$", res.stdout, re.M)
    assert frame and f"{frame[1]} {frame[2]}" in camera_stamps(camera_log)
    res = subprocess.run([sys.executable, "-m", "lens_ros.ros.ask", "--status", *ROS_NS],
                         capture_output=True, text=True, timeout=120, cwd=work)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("lens_node: inference: ") and re.search(
        r"^  state +active$", res.stdout, re.M), res.stdout


def test_ctrl_c_during_generation_cancels_the_goal(tiny_model_dir, tmp_path):
    ckpt = long_talker_checkpoint(tiny_model_dir, tmp_path)
    params = {"model_path": str(ckpt), "max_new_tokens": 4000}
    with running_node(tmp_path, params, "cancel_probe", ns="opcancel"):
        log = tmp_path / "ask.log"
        proc = tool(log, "ask", "talk for a long time", "--image",
                    str(REPO / "test" / "data" / "tabletop.png"),
                    ns=["--ros-args", "-r", "__ns:=/opcancel"])
        assert wait_text(log, r"reasoning: ", 60), log.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 17, log.read_text()  # 10 + STATUS_CANCELED
    out = log.read_text()
    assert re.search(r"^status +CANCELED +\(goal CANCELED\)", out, re.M), out
    assert "Traceback" not in out


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed "
                    "(scripts/setup_env.sh installs it with apt-get)")
def test_console_in_a_headless_browser(stack, tmp_path):
    from helpers.ros_probe import ProbeNode

    from lens_ros.msg import AudioChunk
    from lens_ros.ros.qos import AUDIO_QOS

    work, _ = stack
    log = tmp_path / "console.log"
    proc = tool(log, "console.server", "--host", "0.0.0.0", "--port", "0", "--token", "s3cret")
    browser = None
    probe = ProbeNode("audio_probe")
    chunks = []
    audio_sub = probe.node.create_subscription(AudioChunk, f"/{NS}/audio", chunks.append,
                                               AUDIO_QOS)
    try:
        url = wait_text(log, r"open http://\S+:(\d+)/\?token=s3cret", 30)
        assert url, log.read_text()
        base = f"http://127.0.0.1:{url[1]}"
        for path in ("/", "/frame.jpg?src=image", "/api/state", "/events?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path, timeout=10)
            assert err.value.code == 403, path
        browser = Browser(tmp_path / "chromium")
        browser.navigate(f"{base}/?token=s3cret")
        assert browser.wait("document.getElementById('camera').naturalWidth > 0", 30), \
            "no camera frame shown"
        assert browser.wait("document.getElementById('link').textContent === 'connected'", 10)
        browser.type_text("#command", COMMAND)
        browser.press_enter()
        assert browser.wait("document.querySelector('#results tbody tr')", 60), "no result row"
        row = browser.eval("[...document.querySelector('#results tbody tr').cells]"
                           ".map(c => c.textContent)")
        assert row[1] == COMMAND and row[2] == "OK", row
        assert browser.wait("document.getElementById('overlay').naturalWidth > 0", 30)
        assert browser.wait("document.getElementById('reasoning').textContent.length > 0", 10)
        assert browser.wait("/OK/.test(document.getElementById('stage').textContent)", 20)
        assert browser.wait("/state +active/.test("
                            "document.getElementById('diagnostics').textContent)", 30)
        if os.environ.get("LENS_CONSOLE_SCREENSHOT"):  # refresh docs/img/console.png
            browser.screenshot(Path(os.environ["LENS_CONSOLE_SCREENSHOT"]))
        # push-to-talk: Chromium's fake microphone -> 16 kHz int16 -> AudioChunk on `audio`
        assert probe.spin_until(lambda: audio_sub.get_publisher_count() > 0, 20)
        browser.hold("#talk", 1.5)
        assert browser.wait("/^sent /.test(document.getElementById('talk-info').textContent)",
                            20), browser.eval("document.getElementById('talk-info').textContent")
        assert probe.spin_until(lambda: len(chunks) >= 20, 20), len(chunks)
        assert {(c.sample_rate, c.channels, c.encoding) for c in chunks} == {(16000, 1, "S16LE")}
        loud = max(np.abs(np.frombuffer(bytes(c.data), "<i2")).max() for c in chunks)
        assert loud > 1000, "the recorded beep is missing"
    finally:
        if browser is not None:
            browser.close()
        stop_process(proc)
        probe.close()
    assert proc.returncode == 0, log.read_text()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed "
                    "(apt-get install tmux)")
def test_interactive_lens_ask_in_tmux(stack, tmp_path):
    work, _ = stack
    sock = ["tmux", "-L", f"lens_ask_test_{os.getpid()}"]
    cmd = " ".join([sys.executable, "-m", "lens_ros.ros.ask", *ROS_NS])
    subprocess.run([*sock, "new-session", "-d", "-x", "120", "-y", "40", "-s", "ask", cmd],
                   check=True, env={**os.environ, "HOME": str(tmp_path)}, cwd=str(work))
    pane = lambda: subprocess.run([*sock, "capture-pane", "-p", "-t", "ask"],  # noqa: E731
                                  capture_output=True, text=True).stdout
    try:
        end = time.monotonic() + 30
        while "lens>" not in pane() and time.monotonic() < end:  # tmux trims the blank
            time.sleep(0.2)
        subprocess.run([*sock, "send-keys", "-t", "ask", COMMAND, "Enter"], check=True)
        end = time.monotonic() + 60
        while not re.search(r"^status +OK", pane(), re.M) and time.monotonic() < end:
            time.sleep(0.3)
        text = pane()
        assert re.search(r"^reasoning: <think>", text, re.M), text
        assert re.search(r"^status +OK", text, re.M), text
        subprocess.run([*sock, "send-keys", "-t", "ask", "Up", "Enter"], check=True)  # history
        end = time.monotonic() + 60
        while len(re.findall(r"^status +OK", pane(), re.M)) < 2 and time.monotonic() < end:
            time.sleep(0.3)
        assert len(re.findall(rf"^lens> {COMMAND}$", pane(), re.M)) == 2, pane()
        subprocess.run([*sock, "send-keys", "-t", "ask", "C-d"], check=True)
    finally:
        subprocess.run([*sock, "kill-server"], capture_output=True)
