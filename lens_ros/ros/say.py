"""``lens-say "the red cube"``: synthesise a spoken command with espeak-ng and publish it as
AudioChunk messages on ``audio`` (or write a WAV), to try speech_node without a microphone.

espeak-ng is a system package (``apt-get install espeak-ng``), not needed by anything else.
Publishing imports rclpy lazily; ``--wav --no-publish`` works without ROS.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

from lens_ros.conversions.audio import pcm_to_chunks
from lens_ros.speech.audio import pad_silence, write_wav
from lens_ros.speech.synthesis import synthesize


class ListenerMissingError(RuntimeError):
    """Raised when the named listener node does not subscribe to the topic in time."""


def listener_matched(node, pub, listener: str) -> bool:
    """True when a node named ``listener`` (a bare name, or a full name "/ns/name")
    subscribes to ``pub``'s topic and ``pub`` has matched at least one subscriber; "" accepts
    any subscriber."""
    if pub.get_subscription_count() == 0:
        return False
    if not listener:
        return True
    for info in node.get_subscriptions_info_by_topic(pub.topic_name):
        full = f"{info.node_namespace.rstrip('/')}/{info.node_name}"
        if listener in (info.node_name, full):
            return True
    return False


def publish_pcm(pcm16: np.ndarray, rate: int, topic: str = "audio", chunk_s: float = 0.1,
                realtime: bool = True, wait_s: float = 5.0, frame_id: str = "lens_say",
                listener: str = "speech_node") -> int:
    """Publish PCM as AudioChunk messages (reliable, depth 500) from a temporary node.

    Waits up to ``wait_s`` until the node ``listener`` itself subscribes to ``topic`` (a bag
    recorder or another subscriber does not count; "" = any subscriber), paces chunks at real
    time when ``realtime``, then waits until the messages are acknowledged. Returns the number
    of chunks sent. Raises ListenerMissingError when ``listener`` did not appear in time.
    """
    import rclpy
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    from lens_ros.msg import AudioChunk
    from lens_ros.ros.qos import AUDIO_QOS

    rclpy.init()
    try:
        node = rclpy.create_node("lens_say")
        pub = node.create_publisher(AudioChunk, topic, AUDIO_QOS)
        end = time.monotonic() + wait_s
        while not listener_matched(node, pub, listener):
            if time.monotonic() > end:
                others = sorted({i.node_name for i in
                                 node.get_subscriptions_info_by_topic(pub.topic_name)})
                raise ListenerMissingError(
                    f"no node named {listener!r} subscribes to {pub.topic_name!r} after "
                    f"{wait_s:g} s (subscribers: {others or 'none'}); start speech_node "
                    "(autostart or lifecycle activate), or pass --listener NAME / --listener ''")
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


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lens-say", description=__doc__.split("\n\n")[0])
    p.add_argument("text", help="the command to say, e.g. 'the red mug left of the laptop'")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice, e.g. en-us, en-us+f2, "
                   "en-us+klatt2 (espeak-ng --voices=en lists them)")
    p.add_argument("--speed", type=int, default=160, help="words per minute")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of the published audio")
    p.add_argument("--topic", default="audio", help="AudioChunk topic speech_node listens to")
    p.add_argument("--chunk-s", type=float, default=0.1, help="seconds of audio per message")
    p.add_argument("--fast", action="store_true", help="publish all chunks at once instead "
                   "of at real-time pace")
    p.add_argument("--silence-s", type=float, default=0.8, help="silence before and after the "
                   "speech (the node closes an utterance after vad.hangover_s of silence)")
    p.add_argument("--listener", default="speech_node", help="wait until the node with "
                   "this name subscribes to --topic before speaking ('' = any subscriber)")
    p.add_argument("--wait-s", type=float, default=10.0, help="how long to wait for it")
    p.add_argument("--wav", default="", help="write the audio to this WAV file")
    p.add_argument("--no-publish", action="store_true", help="only write --wav, no ROS")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        pcm = synthesize(args.text, args.voice, args.speed, args.rate)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as err:
        print(f"lens-say: {err}", file=sys.stderr)
        return 1
    pcm = pad_silence(pcm, args.rate, args.silence_s)
    if args.wav:
        write_wav(args.wav, pcm, args.rate)
        print(f"wrote {len(pcm) / args.rate:.2f} s to {args.wav}")
    if args.no_publish:
        return 0
    try:
        n = publish_pcm(pcm, args.rate, args.topic, args.chunk_s, realtime=not args.fast,
                        wait_s=args.wait_s, listener=args.listener)
    except ListenerMissingError as err:
        print(f"lens-say: {err}", file=sys.stderr)
        return 2
    print(f"published {n} chunks ({len(pcm) / args.rate:.2f} s) on {args.topic!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
