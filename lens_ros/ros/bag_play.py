"""``lens-bag play``: republish a rosbag2's topics through rclpy with the original timing.

What ``ros2 bag play`` does for users of a ROS install (rosbag2 has no PyPI wheel): messages go
out in bag-time order, spaced by their recorded time differences divided by ``rate``; the raw
CDR bytes are published as they are (no deserialization). This is a ROS tool, so it imports
rclpy; the rest of ``lens_ros.bag`` does not.
"""
from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from lens_ros.bag.io import BagError, InputBag

log = logging.getLogger(__name__)


def message_class(msgtype: str):
    """The rclpy message class of ``pkg/msg/Name`` (imports ``pkg.msg``).

    Raises:
      BagError: the package is not installed for rclpy.
    """
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as err:
        raise BagError(f"no rclpy message class for {msgtype} ({err}); install its interface "
                       "package or leave the topic out with --topics") from err


@dataclass
class PlayConfig:
    """Settings of one ``lens-bag play``."""

    rate: float = 1.0  #: playback speed factor (2.0 = twice as fast)
    loop: bool = False  #: start over at the end, until interrupted
    start_offset: float = 0.0  #: skip the first N seconds of the bag
    topics: list[str] | None = None  #: topics to play; None = all
    remap: dict[str, str] = field(default_factory=dict)  #: bag topic -> published topic
    qos_depth: int = 10  #: publisher history depth
    best_effort: bool = False  #: publish best effort instead of reliable
    wait_for_subscribers: float = 0.0  #: wait up to N s for a subscriber on every topic first
    delay: float = 0.0  #: sleep N s after creating the publishers, before the first message

    def __post_init__(self):
        if self.rate <= 0:
            raise ValueError(f"rate={self.rate}; use a positive factor such as 1.0")
        if self.start_offset < 0:
            raise ValueError(f"start_offset={self.start_offset}; use 0 or more seconds")


class BagPlayer:
    """Publishes one bag on ``node`` (see the module docstring); ``play()`` returns the number of
    messages published."""

    def __init__(self, node: Node, bag_path: str | Path, cfg: PlayConfig):
        self.node, self.bag_path, self.cfg = node, Path(bag_path), cfg
        qos = QoSProfile(depth=cfg.qos_depth, reliability=ReliabilityPolicy.BEST_EFFORT
                         if cfg.best_effort else ReliabilityPolicy.RELIABLE)
        with InputBag(self.bag_path) as bag:
            topics = bag.topics
        wanted = cfg.topics if cfg.topics is not None else sorted(topics)
        missing = [t for t in wanted if t not in topics]
        if missing:
            raise BagError(f"topics {missing} are not in {self.bag_path}; it has {sorted(topics)}")
        self.publishers = {t: node.create_publisher(message_class(topics[t][0]),
                                                    cfg.remap.get(t, t), qos) for t in wanted}

    def _wait_for_subscribers(self) -> None:
        end = time.monotonic() + self.cfg.wait_for_subscribers
        while True:
            lonely = [t for t, p in self.publishers.items() if p.get_subscription_count() == 0]
            if not lonely:
                return
            if time.monotonic() >= end or not rclpy.ok(context=self.node.context):
                break
            time.sleep(0.05)
        log.warning("no subscriber yet on %s; playing anyway", lonely)

    def play(self) -> int:
        """Publish the bag once (or until interrupted with ``loop``)."""
        if self.cfg.wait_for_subscribers > 0:
            self._wait_for_subscribers()
        time.sleep(self.cfg.delay)
        count = 0
        while True:
            count += self._play_once()
            if not self.cfg.loop or not rclpy.ok(context=self.node.context):
                break
        for pub in self.publishers.values():  # reliable: let the last messages arrive
            pub.wait_for_all_acked(Duration(seconds=2.0))
        return count

    def _play_once(self) -> int:
        count, t0_bag, t0_wall = 0, None, None
        with InputBag(self.bag_path) as bag:
            for conn, t_ns, raw in bag.messages(list(self.publishers)):
                if t0_bag is None:
                    t0_bag = t_ns + int(self.cfg.start_offset * 1e9)
                if t_ns < t0_bag:
                    continue
                if t0_wall is None:
                    t0_wall = time.monotonic()
                due = t0_wall + (t_ns - t0_bag) / 1e9 / self.cfg.rate
                while (wait := due - time.monotonic()) > 0:
                    if not rclpy.ok(context=self.node.context):
                        return count
                    time.sleep(min(wait, 0.1))
                self.publishers[conn.topic].publish(bytes(raw))
                count += 1
        return count
