"""The ``make demo`` pipeline: the real ``lens_node`` on the shipped model, a bundled synthetic
bag replayed through it with ``lens-bag play``, the answers recorded with ``lens-bag record``,
then scored against the bag's ground truth and written as a demo folder.

    python -m lens_ros.demo.bag [--model models/lens-demo] [--bag data/demo_bag] [--out outputs/demo]

Output folder: ``overlays/NN_<command>.png`` (input frame, mask tint, box, command, reasoning),
``grid.png`` (all overlays), ``results.jsonl`` (one line per command: reasoning, answer, box,
IoUs, status, latency), ``summary.json`` / ``summary.txt`` (commands answered, mean mask IoU,
cIoU, box accuracy@0.5, latency) and ``results_bag/`` (the recorded LensResult bag), ``logs/``.
Three processes talk over real DDS (localhost only, shared-memory profile).
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "lens-demo"
DEFAULT_BAG = REPO / "data" / "demo_bag"
#: node parameters of the demo (the demo model answers with <think> reasoning, short answers)
NODE_PARAMS = {"reasoning": "true", "max_new_tokens": "48", "image_reliability": "reliable",
               "command_queue_size": "50", "frame_max_age": "0.0", "publish_overlay": "false"}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lens_ros.demo.bag", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="LENS checkpoint directory")
    p.add_argument("--bag", default=str(DEFAULT_BAG),
                   help="synthetic bag with ground_truth.jsonl (python -m lens_ros.synthetic bag)")
    p.add_argument("--out", default="outputs/demo", help="demo folder to (re)write")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="give up waiting for results after this many seconds")
    return p


def ros_env() -> dict:
    """Environment of the three processes: localhost-only DDS with the shared-memory profile, on
    a DDS domain of their own (unless ``ROS_DOMAIN_ID`` is set), so that other ROS 2 nodes on the
    machine neither answer the demo's commands nor receive its frames."""
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "lens_fastdds.xml"))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _bin(name: str) -> str:
    return str(Path(sys.prefix) / "bin" / name)


def _wait_for(path: Path, text: str, timeout: float, proc=None) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_pipeline(model: Path, bag: Path, out: Path, n_commands: int, timeout: float) -> float:
    """Node + recorder + player; returns the wall seconds of the replay. Raises RuntimeError
    with the log's tail when a process fails."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = ros_env()
    argv = [_bin("lens_node"), "--ros-args", "-p", f"model_path:={model}"]
    for k, v in NODE_PARAMS.items():
        argv += ["-p", f"{k}:={v}"]
    node_log, rec_log = logs / "lens_node.log", logs / "record.log"
    procs = []
    try:
        with open(node_log, "w") as fh:
            node = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        procs.append(node)
        with open(rec_log, "w") as fh:
            rec = subprocess.Popen([_bin("lens-bag"), "record", "/result", "-o",
                                    str(out / "results_bag"), "--max-messages", str(n_commands),
                                    "--duration", str(int(timeout))],
                                   stdout=fh, stderr=subprocess.STDOUT, env=env)
        procs.append(rec)
        if not _wait_for(rec_log, "recording /result", 120, rec):
            raise RuntimeError("the recorder never saw /result (did lens_node start?)\n"
                               + node_log.read_text(errors="replace")[-2000:])
        t0 = time.monotonic()
        play = subprocess.run([_bin("lens-bag"), "play", str(bag), "--topics", "/camera/image",
                               "/lens/command", "--remap", "/camera/image:=/image",
                               "/lens/command:=/command", "--wait-for-subscribers", "60"],
                              capture_output=True, text=True, env=env, timeout=timeout)
        (logs / "play.log").write_text(play.stdout + play.stderr)
        if play.returncode != 0:
            raise RuntimeError(f"lens-bag play failed:\n{play.stderr[-2000:]}")
        try:
            rec.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(rec)
        return time.monotonic() - t0
    finally:
        for p in reversed(procs):
            _stop(p)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from lens_ros.demo.report import command_groups, load_ground_truth, write_report

    model, bag, out = Path(args.model), Path(args.bag), Path(args.out)
    if not (model / "config.json").is_file():
        print(f"demo: no model at {model} (config.json missing); train one with "
              "scripts/train_demo.sh or pass --model", file=sys.stderr)
        return 2
    try:
        gt = load_ground_truth(bag)
    except (OSError, ValueError) as err:
        print(f"demo: {err}", file=sys.stderr)
        return 2
    if (out / "results_bag").exists():
        import shutil

        shutil.rmtree(out / "results_bag")
    out.mkdir(parents=True, exist_ok=True)
    n = len(command_groups(gt))
    print(f"demo: lens_node on {model}, replaying {bag} ({n} commands) ...", flush=True)
    try:
        wall = run_pipeline(model.resolve(), bag.resolve(), out, n, args.timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1
    summary = write_report(bag, out / "results_bag", gt, out, wall)
    print((out / "summary.txt").read_text())
    print(f"demo: results in {out.resolve()}")
    return 0 if summary["answered"] == summary["commands"] else 1


if __name__ == "__main__":
    sys.exit(main())
