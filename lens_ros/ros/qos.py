"""The QoS profiles of lens_ros's topics: one definition, used by every node and tool.

Commands are the operator's words: ``command`` is **reliable** with a **keep-last history of
1000**, on both sides. A publisher that uses :data:`COMMAND_QOS` and a burst shorter than the
history loses nothing in DDS; ``lens_node`` then queues up to ``command_queue_size`` and answers
overflow with ``DROPPED``, so every command that reached it gets exactly one ``result``. A
publisher with a shallower history (e.g. the default depth 10) can still lose commands of a
burst before they reach the node: publish with :data:`COMMAND_QOS` (or use the ``segment``
action, which is lossless by construction: each goal is acknowledged).

The answers keep the same depth: a burst of commands is answered by a burst of ``DROPPED``
results, and ``result`` with a shallow history would lose those on the way out. Subscribe to
``result`` with :data:`RESULT_QOS` to receive every answer. (DDS drops a sample from the
writer's history once every reliable reader has acknowledged it, so the depth costs memory only
while a reader lags.)
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

#: the history of ``command`` on both sides: deeper than the largest ``command_queue_size``
COMMAND_HISTORY = 1000

#: ``command`` (std_msgs/String): reliable, volatile, keep last :data:`COMMAND_HISTORY`
COMMAND_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE,
                         history=HistoryPolicy.KEEP_LAST, depth=COMMAND_HISTORY)

#: outputs (``result``, ``mask``, ``reasoning``, ``target_point``, transcripts): reliable, keep
#: last :data:`COMMAND_HISTORY`, so the answers of a whole burst reach a subscriber that uses it
RESULT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                        depth=COMMAND_HISTORY)

#: ``audio`` (AudioChunk): reliable, ~50 s of 100 ms chunks, so a burst (a bag replayed fast)
#: or a busy executor loses nothing
AUDIO_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                       depth=500)


def sensor_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """Sensor-data style QoS for camera topics: keep last ``depth``, ``best_effort`` or
    ``reliable``."""
    if reliability not in ("best_effort", "reliable"):
        raise ValueError(f"reliability must be 'best_effort' or 'reliable', got {reliability!r}")
    return QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                      else ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                      depth=depth)
