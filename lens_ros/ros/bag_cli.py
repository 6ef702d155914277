"""``lens-bag play`` and ``lens-bag record`` (rclpy), and the ``lens-bag`` entry point.

``lens-bag run`` is :mod:`lens_ros.bag.cli` (no ROS needed); this module adds the two
subcommands that talk to live nodes::

    lens-bag play data/scene_bag --rate 0.5 --remap /camera/image:=/lens/image
    lens-bag record /lens/result /lens/debug_image -o results_bag
"""
from __future__ import annotations

import sys

from lens_ros.bag import cli as bag_cli


def _add_play(sub) -> None:
    p = sub.add_parser("play", help="republish a bag's topics through rclpy with original timing")
    p.add_argument("bag", help="rosbag2 directory (mcap or sqlite3)")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1.0)")
    p.add_argument("--loop", action="store_true", help="repeat until interrupted")
    p.add_argument("--start-offset", type=float, default=0.0, help="skip the first N seconds")
    p.add_argument("--topics", nargs="+", help="topics to play (default: all)")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO",
                   help="publish bag topic FROM on topic TO")
    p.add_argument("--qos-depth", type=int, default=10, help="publisher history depth")
    p.add_argument("--best-effort", action="store_true", help="publish best effort (default "
                   "reliable, which also reaches best-effort subscribers)")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to N s until every topic has a subscriber before playing")
    p.add_argument("--delay", type=float, default=0.0, help="sleep N s before the first message")


def _add_record(sub) -> None:
    p = sub.add_parser("record", help="record live topics (LensResult included) into a bag")
    p.add_argument("topics", nargs="+", help="absolute topic names, e.g. /lens/result")
    p.add_argument("-o", "--output", required=True, help="bag directory to create")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="storage "
                   "(default mcap)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after N s (0 = Ctrl-C)")
    p.add_argument("--max-messages", type=int, default=0, help="stop after N messages in total")
    p.add_argument("--qos-depth", type=int, default=100, help="subscription history depth")


def _ros(name: str, body) -> int:
    """Run ``body(node, spin_once)`` inside rclpy; Ctrl-C ends it cleanly."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from lens_ros.ros.node_main import release_quietly, stopped_by_signal

    rclpy.init()
    node = executor = None
    try:
        node = Node(name)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        body(node, lambda timeout: executor.spin_once(timeout_sec=timeout))
    except BaseException as err:  # noqa: B036 - a stop may surface as any rclpy error
        if not stopped_by_signal(err):
            raise
    finally:
        if executor is not None:  # bounded: a callback cut by the signal never completes
            release_quietly(lambda: executor.shutdown(timeout_sec=2.0))
        if node is not None:
            release_quietly(node.destroy_node)
        release_quietly(rclpy.try_shutdown)
    return 0


def _play(args) -> int:
    from lens_ros.ros.bag_play import BagPlayer, PlayConfig

    remap = {}
    for item in args.remap:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise ValueError(f"--remap {item!r} is not FROM:=TO, e.g. /camera/image:=/lens/image")
        remap[src] = dst
    cfg = PlayConfig(rate=args.rate, loop=args.loop, start_offset=args.start_offset,
                     topics=args.topics, remap=remap, qos_depth=args.qos_depth,
                     best_effort=args.best_effort, wait_for_subscribers=args.wait_for_subscribers,
                     delay=args.delay)

    def body(node, _spin_once):
        n = BagPlayer(node, args.bag, cfg).play()
        print(f"lens-bag play: published {n} messages from {args.bag}")

    return _ros("lens_bag_play", body)


def _record(args) -> int:
    from lens_ros.ros.bag_record import RecordConfig, record

    cfg = RecordConfig(topics=args.topics, storage=args.storage, duration=args.duration,
                       max_messages=args.max_messages, qos_depth=args.qos_depth)

    def body(node, spin_once):
        counts = record(node, args.output, cfg, spin_once)
        print(f"lens-bag record: wrote {counts} to {args.output}")

    return _ros("lens_bag_record", body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lens-bag`` (run, play, record); returns the process exit code."""
    return bag_cli.main(argv, extra={"play": (_add_play, _play), "record": (_add_record, _record)})


if __name__ == "__main__":
    sys.exit(main())
