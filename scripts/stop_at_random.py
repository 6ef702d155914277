"""Start and stop each node and batch tool at random moments; count tracebacks and exit codes.

Each run starts one tool, waits a seeded random time (covering model load, work and idle), sends
SIGINT or SIGTERM and checks: exit code as promised (0 for the nodes, ``lens-camera``,
``lens-console`` and ``lens-bag play|record``;
0 or 130 for the batch jobs ``lens-bag run``, ``lens-eval``, ``lens-train``: 130 when stopped
before the end, 0 when it had finished) and no ``Traceback`` in the output. While ``lens_node``
runs, frames and commands are published to it so that some stops land during generation.

    python scripts/stop_at_random.py --runs 20 --seed 0            # every tool, 20 stops each
    python scripts/stop_at_random.py --runs 3 --tools lens_node lens-bag-run

Prints one line per tool: runs, good stops, tracebacks, exit codes seen.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
START = [PY, "-m", "lens_ros.startup"]  # what the console scripts run (lens_node, lens-bag, ...)
#: tool -> (moment range in seconds after the start, exit codes that count as a clean stop)
TOOLS = {"lens_node": ((0.5, 14.0), {0}), "speech_node": ((0.5, 6.0), {0}),
         "lens-bag-run": ((1.0, 14.0), {0, 130}), "lens-bag-play": ((1.0, 5.0), {0}),
         "lens-bag-record": ((1.0, 5.0), {0}), "lens-eval": ((1.0, 16.0), {0, 130}),
         "lens-train": ((1.0, 30.0), {0, 130}), "lens-camera": ((0.5, 6.0), {0}),
         "lens-console": ((0.5, 6.0), {0})}


def _prepare(work: Path) -> dict:
    """A tiny checkpoint, a scene bag and a small RefCOCO-layout dataset, made once."""
    model, data, bag = work / "tiny", work / "refer_seg", work / "scenes_bag"
    if not model.exists():
        subprocess.run([PY, "-c", "import sys; from lens_ros.model.presets import "
                        "save_preset_checkpoint as s; s('tiny', sys.argv[1], seed=0)",
                        str(model)], check=True)
    if not data.exists():
        subprocess.run([PY, "-m", "lens_ros.synthetic", "refcoco", "--out", str(data),
                        "--train", "2", "--val", "40", "--test", "2"], check=True,
                       stdout=subprocess.DEVNULL)
    if not bag.exists():
        subprocess.run([PY, "-m", "lens_ros.synthetic", "bag", "--out", str(bag), "--scenes",
                        "10", "--frames-per-scene", "4"], check=True, stdout=subprocess.DEVNULL)
    return {"model": model, "data": data, "bag": bag}


def _argv(tool: str, res: dict, out: Path, ns: str) -> list[str]:
    ros = ["--ros-args", "-r", f"__ns:=/{ns}"]
    return {
        "lens_node": [*START, "lens_node", *ros, "-p",
                      f"model_path:={res['model']}", "-p", "max_new_tokens:=16"],
        "speech_node": [*START, "speech_node", *ros],
        "lens-bag-run": [*START, "lens-bag", "run", str(res["bag"]), "-o",
                         str(out), "--model", str(res["model"]), "--command", "the object",
                         "--max-new-tokens", "8", "--no-progress"],
        "lens-bag-play": [*START, "lens-bag", "play", str(res["bag"]), "--loop",
                          "--remap", f"/lens/image:=/{ns}/image"],
        "lens-bag-record": [*START, "lens-bag", "record", f"/{ns}/x", "-o",
                            str(out)],
        "lens-eval": [*START, "lens-eval", "--model", str(res["model"]),
                      "--data-root", str(res["data"]), "--splits", "synthetic/val", "-o",
                      str(out), "--max-new-tokens", "8"],
        "lens-camera": [*START, "lens-camera", "--synthetic", "--rate", "30", *ros],
        "lens-console": [*START, "lens-console", "--host", "0.0.0.0", "--port", "0", "--token",
                         "stop", *ros],
        "lens-train": [*START, "lens-train", "stage1", "--config",
                       str(REPO / "config/train_stage1.yaml"), "--config",
                       str(REPO / "config/train_stage1_cpu_tiny.yaml"), "--output_dir",
                       str(out), "--max_steps", "6"],
    }[tool]


def _feed(ns: str, stop: threading.Event) -> None:
    """Publish 10 Hz frames and 2 Hz commands to /ns/image and /ns/command (reliable)."""
    import numpy as np
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from lens_ros.ros.qos import COMMAND_QOS

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = Node("stop_feeder", context=ctx)
    img_pub = node.create_publisher(Image, f"/{ns}/image", 5)
    cmd_pub = node.create_publisher(String, f"/{ns}/command", COMMAND_QOS)
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8).tobytes()
    msg = Image(height=96, width=128, encoding="rgb8", step=128 * 3, data=rgb)
    k = 0
    while not stop.wait(0.1):
        img_pub.publish(msg)
        if k % 5 == 0:
            cmd_pub.publish(String(data=f"the object {k}"))
        k += 1
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def stop_once(tool: str, res: dict, work: Path, rng: random.Random, i: int) -> dict:
    """Start ``tool``, stop it at a random moment; returns {rc, traceback, moment, signal}."""
    (lo, hi), _ = TOOLS[tool]
    moment, sig = rng.uniform(lo, hi), rng.choice([signal.SIGINT, signal.SIGTERM])
    ns = f"stop{os.getpid()}_{i}"
    out = work / f"{tool}_{i}"
    log = work / f"{tool}_{i}.log"
    feeder_stop, feeder = threading.Event(), None
    if tool == "lens_node":
        feeder = threading.Thread(target=_feed, args=(ns, feeder_stop), daemon=True)
        feeder.start()
    with open(log, "w") as fh:
        proc = subprocess.Popen(_argv(tool, res, out, ns), stdout=fh, stderr=subprocess.STDOUT,
                                cwd=str(work), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        time.sleep(moment)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "hung"
    feeder_stop.set()
    if feeder is not None:
        feeder.join(10)
    text = log.read_text(errors="replace")
    return {"rc": rc, "traceback": "Traceback" in text, "moment": round(moment, 2),
            "signal": sig.name, "log": str(log)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="stops per tool (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tools", nargs="*", default=list(TOOLS), choices=list(TOOLS))
    p.add_argument("--work", help="folder for the data and logs (default: a temporary one)")
    p.add_argument("--json", help="also write the per-run results here")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="lens_stops_"))
    work.mkdir(parents=True, exist_ok=True)
    res = _prepare(work)
    rng, results, bad = random.Random(args.seed), {}, 0
    for tool in args.tools:
        runs = [stop_once(tool, res, work, rng, i) for i in range(args.runs)]
        results[tool] = runs
        good = sum(r["rc"] in TOOLS[tool][1] and not r["traceback"] for r in runs)
        bad += args.runs - good
        codes = sorted({str(r["rc"]) for r in runs})
        print(f"{tool}: {args.runs} stops, {good} clean, "
              f"{sum(r['traceback'] for r in runs)} tracebacks, exit codes {codes}", flush=True)
        for r in runs:
            if r["rc"] not in TOOLS[tool][1] or r["traceback"]:
                print(f"  not clean: {r}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
