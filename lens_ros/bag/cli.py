"""``lens-bag {run,play,record}``: offline LENS over rosbag2, replay, and recording.

Examples::

    lens-bag run data/scene_bag -o out --model runs/demo --command "the red mug"
    lens-bag run data/scene_bag -o out --model runs/demo --command-topic /command
    lens-bag run data/spoken_bag -o out --model runs/demo --audio-topic /audio
    lens-bag play data/scene_bag --rate 0.5 --remap /camera/image:=/lens/image
    lens-bag record /lens/result /lens/debug_image -o results_bag

``run`` needs no ROS (it reads and writes bags with rosbags and calls the model directly);
``play`` and ``record`` talk to live nodes through rclpy and live in :mod:`lens_ros.ros.bag_cli`,
the ``lens-bag`` entry point (``python -m lens_ros.bag.cli run ...`` works without rclpy).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable

from lens_ros.bag.io import BagError
from lens_ros.core import LensError
from lens_ros.interrupts import run_batch


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run LENS over a bag's frames, write an output bag + report")
    p.add_argument("bag", help="input rosbag2 directory (mcap or sqlite3)")
    p.add_argument("-o", "--output", required=True, help="output directory (bag/, frames.jsonl, "
                   "frames.csv, overlays.png, summary.json); re-running resumes it")
    p.add_argument("--model", required=True, help="checkpoint directory for LensSegmenter")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--command", help="fixed command applied to the selected frames")
    src.add_argument("--command-topic", help="std_msgs/String topic of the bag with the commands")
    src.add_argument("--audio-topic", help="lens_ros/AudioChunk topic of the bag with spoken "
                     "commands: recognised offline as speech_node does; each accepted one applies "
                     "from the frame nearest the end of its speech (OUT/transcripts.jsonl)")
    p.add_argument("--speech-config", default="", help="speech_node parameter file for "
                   "--audio-topic (backend, vocabulary, VAD; default: config/speech.yaml's values)")
    p.add_argument("--transcript-topic", default="/lens/speech/transcript", help="with "
                   "--audio-topic: output lens_ros/Transcript topic, one per utterance ('' = none)")
    p.add_argument("--spoken-command-topic", default="/lens/command", help="with --audio-topic: "
                   "output std_msgs/String topic of the accepted spoken commands ('' = none)")
    p.add_argument("--image-topic", help="Image or CompressedImage topic (default: the only "
                   "one whose name does not contain 'depth')")
    p.add_argument("--every-n-frames", type=int, default=1, help="run on every N-th frame "
                   "(others are recorded as SKIPPED; default 1)")
    p.add_argument("--every-seconds", type=float, default=0.0, help="run when this much bag time "
                   "passed since the last run (overrides --every-n-frames when > 0)")
    p.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=None,
                   help="force reasoning on/off (default: the checkpoint's setting)")
    p.add_argument("--max-new-tokens", type=int, help="generation budget (default: checkpoint's)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", help="torch dtype (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), help="output bag storage "
                   "(default: as the input)")
    p.add_argument("--result-topic", default="/lens/result", help="LensResult output topic")
    p.add_argument("--mask-topic", default="/lens/mask", help="mono8 mask output topic")
    p.add_argument("--debug-topic", default="/lens/debug_image",
                   help="rgb8 overlay output topic ('' = none)")
    p.add_argument("--strip-frames", type=int, default=8,
                   help="overlays in overlays.png (0 = none)")
    p.add_argument("--video", action="store_true", help="also write overlays.mp4 (OpenCV mp4v)")
    p.add_argument("--max-frames", type=int, help="process only the first N frames")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


#: a subcommand: (adds its parser to the subparsers, runs it and returns the exit code)
Subcommand = tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]


def make_parser(extra: dict[str, Subcommand] | None = None) -> argparse.ArgumentParser:
    """The ``lens-bag`` parser: ``run`` plus the ``extra`` subcommands (``play``/``record``,
    added by :mod:`lens_ros.ros.bag_cli`, which needs rclpy)."""
    p = argparse.ArgumentParser(prog="lens-bag", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_run(sub)
    for add, _ in (extra or {}).values():
        add(sub)
    return p


def _run(args) -> int:
    from lens_ros.bag.runner import BagRunner, RunConfig
    from lens_ros.evaluation.cli import load_segmenter

    cfg = RunConfig(image_topic=args.image_topic, command_topic=args.command_topic,
                    command=args.command, audio_topic=args.audio_topic,
                    speech_config=args.speech_config, transcript_topic=args.transcript_topic,
                    spoken_command_topic=args.spoken_command_topic,
                    every_n_frames=args.every_n_frames,
                    every_seconds=args.every_seconds, reasoning=args.reasoning,
                    result_topic=args.result_topic, mask_topic=args.mask_topic,
                    debug_topic=args.debug_topic, storage=args.storage,
                    strip_frames=args.strip_frames, video=args.video, max_frames=args.max_frames)
    seg = load_segmenter(args.model, args.device, args.dtype, max_new_tokens=args.max_new_tokens)
    summary = BagRunner(seg, cfg, progress=not args.no_progress).run(args.bag, args.output)
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None, extra: dict[str, Subcommand] | None = None) -> int:
    """``lens-bag`` without ROS (``run`` only, plus ``extra``); returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = make_parser(extra).parse_args(argv)
    handler = {"run": _run, **{name: run for name, (_, run) in (extra or {}).items()}}[args.cmd]

    def job() -> int:
        try:
            return handler(args)
        except (ValueError, BagError, LensError) as err:
            print(f"lens-bag {args.cmd}: error: {err}", file=sys.stderr)
            return 2

    if args.cmd != "run":  # play and record stop on SIGINT/SIGTERM themselves, with 0
        return job()
    return run_batch("lens-bag run", job, "every finished frame is in frames.jsonl; re-run "
                     "the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
