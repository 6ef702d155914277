"""lens_node's own overhead per result (receive + convert + publish, model excluded) and its
ratio to the tiny model's time, at 640x480 and 1280x720 (target: overhead <= 5 ms at 640x480).

Runs the real node (``lens_node`` console script, tiny checkpoint, max_new_tokens 8) in a
subprocess over DDS with the shared-memory Fast DDS profile. Per result:
  receive   rclpy's deserialisation of the frame, what the node's executor does before the image
            callback (timed here in-process on the same serialized message);
  node      the node's own time outside the model: picking the frame, numpy conversion, building
            LensResult + mask + reasoning and publishing them (the node reports it on
            /diagnostics as last_overhead_ms);
  model     time inside LensSegmenter (set_image on the new frame + segment), node-reported;
  e2e       command published -> LensResult received here, for context (includes DDS twice).
Seeded frames; warm-up results are discarded; medians over --results results.
Usage: python bench/bench_node.py [--results 20] [--sizes 640x480 1280x720] [--overlay]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 5.0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=int, default=20, help="timed results per frame size")
    p.add_argument("--warmup", type=int, default=3, help="untimed results per frame size first")
    p.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="WxH frame sizes")
    p.add_argument("--model", default="", help="checkpoint directory (default: a fresh tiny one)")
    p.add_argument("--max-new-tokens", type=int, default=8, help="generation budget")
    p.add_argument("--overlay", action="store_true",
                   help="subscribe to debug_image, so the node also renders the overlay")
    return p


def _isolate_ros() -> None:
    """Own domain, loopback discovery, shared-memory profile: set before rclpy is imported."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE",
                          str(REPO / "config" / "lens_fastdds.xml"))
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="bench_node_log_"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")


class Probe:
    """Publishes frames and commands, records results and diagnostics."""

    def __init__(self, overlay: bool) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from lens_ros.msg import LensResult

        rclpy.init()
        self.node = Node("bench_node_probe")
        self.image_pub = self.node.create_publisher(Image, "image", 10)
        self.command_pub = self.node.create_publisher(String, "command", 10)
        self.results, self.diag = [], {}
        self.node.create_subscription(LensResult, "result",
                                      lambda m: self.results.append((time.perf_counter(), m)), 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        if overlay:
            self.node.create_subscription(Image, "debug_image", lambda m: None,
                                          qos_profile_sensor_data)
        self.String = String

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            if st.name.startswith("lens_node"):
                self.diag = {kv.key: kv.value for kv in st.values}

    def spin_until(self, cond, timeout: float) -> bool:
        import rclpy

        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                return False
            rclpy.spin_once(self.node, timeout_sec=0.01)
        return True

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


def _receive_ms(msg, repeats: int = 20) -> float:
    """Median time of rclpy turning the serialized frame into a Python Image message."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    raw = serialize_message(msg)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        deserialize_message(raw, Image)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_size(probe: Probe, w: int, h: int, args, rng) -> dict:
    """Frames and commands one at a time; node-side figures read back from /diagnostics."""
    from lens_ros.conversions.image import make_header, numpy_to_image, rclpy_types

    types = rclpy_types()
    node_ms, model_ms, e2e_ms = [], [], []
    for i in range(args.warmup + args.results):
        rgb = rng.integers(0, 256, (h, w, 3), dtype="uint8")
        frame = numpy_to_image(rgb, "rgb8", make_header(types, (i + 1) * 10**9, "bench"), types)
        probe.image_pub.publish(frame)
        probe.spin_until(lambda: False, 0.05)  # let the frame arrive before the command
        n = len(probe.results)
        t0 = time.perf_counter()
        probe.command_pub.publish(probe.String(data=f"bench {w}x{h} {i}"))
        if not probe.spin_until(lambda: len(probe.results) > n, 60):
            raise RuntimeError("lens_node did not answer; see its log")
        t_res, res = probe.results[n]
        want = str(int(probe.diag.get("results", "0")) + 1)
        probe.spin_until(lambda: probe.diag.get("results") >= want, 5)  # next diagnostic
        if i >= args.warmup and res.status == 0:
            e2e_ms.append((t_res - t0) * 1e3)
            node_ms.append(float(probe.diag["last_overhead_ms"]))
            model_ms.append(float(probe.diag["last_model_ms"]))
    return {"receive": _receive_ms(frame), "node": statistics.median(node_ms),
            "model": statistics.median(model_ms), "e2e": statistics.median(e2e_ms),
            "n": len(node_ms)}


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    _isolate_ros()
    import numpy as np

    work = Path(tempfile.mkdtemp(prefix="bench_node_"))
    model = args.model
    if not model:
        from lens_ros.model.presets import save_preset_checkpoint

        model = str(save_preset_checkpoint("tiny", work / "tiny", seed=0))
    log = open(work / "lens_node.log", "w")
    node = subprocess.Popen(
        [str(Path(sys.prefix) / "bin" / "lens_node"), "--ros-args", "-p", f"model_path:={model}",
         "-p", f"max_new_tokens:={args.max_new_tokens}", "-p", "diagnostics_period:=0.05",
         "-p", "image_reliability:=reliable"], stdout=log, stderr=subprocess.STDOUT)
    probe = Probe(args.overlay)
    try:
        if not probe.spin_until(lambda: probe.command_pub.get_subscription_count() > 0
                                and probe.diag.get("state") == "active", 120):
            print(f"lens_node did not become active; log: {work / 'lens_node.log'}")
            return 1
        rng = np.random.default_rng(0)
        print(f"lens_node overhead per result, tiny model (max_new_tokens={args.max_new_tokens})"
              f", overlay {'on' if args.overlay else 'off'}, medians of {args.results}; "
              "2-core shared machine: figures are noisy")
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            r = bench_size(probe, w, h, args, rng)
            overhead = r["receive"] + r["node"]
            target = f" (target <= {TARGET_MS:.0f} ms)" if (w, h) == (640, 480) else ""
            print(f"{w}x{h}: overhead {overhead:.2f} ms{target} = receive {r['receive']:.2f} + "
                  f"convert/publish {r['node']:.2f}; tiny model {r['model']:.1f} ms; "
                  f"overhead/model {overhead / r['model']:.3f}; e2e command->result "
                  f"{r['e2e']:.1f} ms ({r['n']} results)")
    finally:
        probe.close()
        node.send_signal(2)
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
