"""``lens-bag record``: record live topics (LensResult included) into a rosbag2 through rclpy.

Message types are resolved from the ROS graph, so any topic whose interface package is installed
can be recorded; subscriptions take the raw CDR bytes (``raw=True``), which are byte-identical to
what rosbags writes, and each message is stamped with its receive time, as ``ros2 bag record``
does. Topics that do not exist yet are picked up as soon as they appear. The QoS follows the
publishers: best effort if any publisher is best effort, else reliable. This is a ROS tool, so it
imports rclpy.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from lens_ros.bag.io import BagError, OutputBag
from lens_ros.ros.bag_play import message_class

log = logging.getLogger(__name__)


@dataclass
class RecordConfig:
    """Settings of one ``lens-bag record``."""

    topics: list[str]  #: absolute topic names to record
    storage: str = "mcap"  #: mcap or sqlite3
    duration: float = 0.0  #: stop after N seconds (0 = until interrupted)
    max_messages: int = 0  #: stop after N messages in total (0 = no limit)
    qos_depth: int = 100  #: subscription history depth

    def __post_init__(self):
        if not self.topics:
            raise ValueError("give at least one topic to record")
        bad = [t for t in self.topics if not t.startswith("/")]
        if bad:
            raise ValueError(f"topics {bad} must be absolute (start with '/'), e.g. /lens/result")


class BagRecorder:
    """Subscribes ``node`` to the configured topics and writes everything into ``bag``."""

    def __init__(self, node: Node, bag: OutputBag, cfg: RecordConfig):
        self.node, self.bag, self.cfg = node, bag, cfg
        self.counts: dict[str, int] = {}
        self._subs = {}
        self._t_start = time.monotonic()
        self._discover()
        self._timer = node.create_timer(0.2, self._discover)

    @property
    def total(self) -> int:
        """Messages written so far."""
        return sum(self.counts.values())

    def done(self) -> bool:
        """True when the duration or message limit is reached."""
        if self.cfg.max_messages and self.total >= self.cfg.max_messages:
            return True
        return bool(self.cfg.duration) and time.monotonic() - self._t_start >= self.cfg.duration

    def _discover(self) -> None:
        """Subscribe to every wanted topic that now has a type on the graph."""
        graph = dict(self.node.get_topic_names_and_types())
        for topic in self.cfg.topics:
            if topic in self._subs or topic not in graph:
                continue
            msgtype = graph[topic][0]
            pubs = self.node.get_publishers_info_by_topic(topic)
            best_effort = any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                              for p in pubs)
            qos = QoSProfile(depth=self.cfg.qos_depth, reliability=ReliabilityPolicy.BEST_EFFORT
                             if best_effort else ReliabilityPolicy.RELIABLE)
            try:
                cls = message_class(msgtype)
                self.bag.add_topic(topic, msgtype)
            except BagError as err:  # unknown type: keep recording the other topics
                log.error("cannot record %s: %s", topic, err)
                self._subs[topic] = None
                continue
            self.counts[topic] = 0
            self._subs[topic] = self.node.create_subscription(
                cls, topic, lambda raw, t=topic: self._on_message(t, raw), qos,
                raw=True)
            log.info("recording %s (%s, %s)", topic, msgtype,
                     "best effort" if best_effort else "reliable")

    def close(self) -> None:
        """Stop discovering and receiving (the bag itself is closed by its owner)."""
        self.node.destroy_timer(self._timer)
        for sub in self._subs.values():
            if sub is not None:
                self.node.destroy_subscription(sub)
        self._subs.clear()

    def _on_message(self, topic: str, raw: bytes) -> None:
        """Write one message, stamped with the node clock's receive time."""
        if self.cfg.max_messages and self.total >= self.cfg.max_messages:
            return
        self.bag.write_raw(topic, self.node.get_clock().now().nanoseconds, raw)
        self.counts[topic] += 1


def record(node: Node, output: str | Path, cfg: RecordConfig, spin_once) -> dict[str, int]:
    """Record until ``cfg`` says done or ``spin_once`` raises (Ctrl-C); the bag is always closed.

    ``spin_once(timeout_sec)`` spins the executor that holds ``node``. Returns counts per topic.
    """
    with OutputBag(output, cfg.storage) as bag:
        rec = BagRecorder(node, bag, cfg)
        try:
            while not rec.done():
                spin_once(0.1)
        finally:
            rec.close()
    return rec.counts
