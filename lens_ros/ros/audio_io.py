"""``lens_ros/msg/AudioChunk`` <-> mono int16 PCM, and a small publisher for ``lens-say``.

The conversions are duck-typed: they work with rclpy message classes and with the ``rosbags``
classes of the same type (the bag tools read ``audio`` topics with them), so only
:func:`publish_pcm` imports rclpy.
"""
from __future__ import annotations

import time

import numpy as np

from lens_ros.speech.audio import check_rate, decode_pcm, encode_pcm


def chunk_to_pcm(msg) -> tuple[np.ndarray, int, int]:
    """AudioChunk -> (mono int16 samples, sample rate Hz, clipped float samples).

    Raises AudioFormatError (unknown encoding, cut frame, bad rate or channel count).
    """
    pcm, clipped = decode_pcm(bytes(msg.data), str(msg.encoding), int(msg.channels))
    return pcm, check_rate(int(msg.sample_rate)), clipped


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def pcm_to_chunks(pcm16: np.ndarray, rate: int, chunk_s: float, chunk_cls, header_cls,
                  time_cls, start: float, frame_id: str = "microphone",
                  encoding: str = "S16LE") -> list:
    """Split mono int16 PCM into AudioChunk messages of ``chunk_s`` seconds.

    Arguments:
      chunk_cls, header_cls, time_cls: the AudioChunk, std_msgs/Header and
        builtin_interfaces/Time classes (rclpy's or rosbags').
      start (float): stamp of the first sample, seconds; each chunk is stamped with the time of
        its own first sample.
    """
    rate = check_rate(rate)
    n = max(1, int(round(chunk_s * rate)))
    out = []
    for i in range(0, len(pcm16), n):
        t = start + i / rate
        sec = int(np.floor(t))
        header = header_cls(stamp=time_cls(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 10**9),
                            frame_id=frame_id)
        data = encode_pcm(pcm16[i:i + n], encoding)
        out.append(chunk_cls(header=header, sample_rate=rate, channels=1, encoding=encoding,
                             data=np.frombuffer(data, np.uint8) if _wants_array(chunk_cls)
                             else data))
    return out


def _wants_array(cls) -> bool:
    """rosbags message classes take numpy uint8 arrays for uint8[]; rclpy takes bytes."""
    return cls.__module__.startswith("rosbags")


def publish_pcm(pcm16: np.ndarray, rate: int, topic: str = "audio", chunk_s: float = 0.1,
                realtime: bool = True, wait_s: float = 5.0, frame_id: str = "lens_say") -> int:
    """Publish PCM as AudioChunk messages (reliable, depth 500) from a temporary node.

    Waits up to ``wait_s`` for a subscriber first, paces chunks at real time when ``realtime``,
    then waits until the messages are acknowledged. Returns the number of chunks sent.
    """
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header

    from lens_ros.msg import AudioChunk

    rclpy.init()
    try:
        node = rclpy.create_node("lens_say")
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST, depth=500)
        pub = node.create_publisher(AudioChunk, topic, qos)
        end = time.monotonic() + wait_s
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        start = node.get_clock().now().nanoseconds * 1e-9
        chunks = pcm_to_chunks(pcm16, rate, chunk_s, AudioChunk, Header, Time, start, frame_id)
        t0 = time.monotonic()
        for i, msg in enumerate(chunks):
            if realtime:
                time.sleep(max(0.0, t0 + i * chunk_s - time.monotonic()))
            pub.publish(msg)
        pub.wait_for_all_acked(rclpy.duration.Duration(seconds=wait_s))
        node.destroy_node()
        return len(chunks)
    finally:
        rclpy.try_shutdown()
