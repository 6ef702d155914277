"""``lens_ros/msg/AudioChunk`` <-> mono int16 PCM, and a small publisher for ``lens-say``.

The conversions are duck-typed: they work with rclpy message classes and with the ``rosbags``
classes of the same type (the bag tools read ``audio`` topics with them), so only
publishing is :mod:`lens_ros.ros.say`.
"""
from __future__ import annotations

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
