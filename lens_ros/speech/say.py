"""``lens-say "the red cube"``: synthesise a spoken command with espeak-ng and publish it as
AudioChunk messages on ``audio`` (or write a WAV), to try speech_node without a microphone.

espeak-ng is a system package (``apt-get install espeak-ng``), not needed by anything else.
Publishing imports rclpy lazily (``lens_ros.ros.audio_io``); ``--wav`` alone works without ROS.
"""
from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys

import numpy as np

from lens_ros.speech.audio import pad_silence, read_wav, resample, write_wav
from lens_ros.speech.types import AudioFormatError


def synthesize(text: str, voice: str = "en-us", speed: int = 160, rate: int = 16000
               ) -> np.ndarray:
    """espeak-ng speech of ``text`` as (N,) int16 mono at ``rate`` Hz (3 dB headroom).

    Raises FileNotFoundError when espeak-ng is not installed, RuntimeError when it fails.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed: apt-get install espeak-ng "
                                "(or speak into a microphone, see README_speech.md)")
    proc = subprocess.run([exe, "-v", voice, "-s", str(int(speed)), "--stdout", text],
                          capture_output=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    try:
        pcm, src_rate = read_wav(io.BytesIO(proc.stdout))
    except AudioFormatError as err:  # espeak's streamed WAV header has no length: parse by hand
        pcm, src_rate = _raw_espeak_wav(proc.stdout), 22050
        if pcm.size == 0:
            raise RuntimeError(f"espeak-ng output unreadable: {err}") from err
    pcm = resample(pcm, src_rate, rate)
    return np.round(pcm.astype(np.float64) * 10 ** (-3 / 20)).astype(np.int16)


def _raw_espeak_wav(data: bytes) -> np.ndarray:
    start = data.find(b"data")
    return np.frombuffer(data[start + 8:len(data) - (len(data) - start - 8) % 2], "<i2") \
        if start >= 0 else np.zeros(0, np.int16)


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
    from lens_ros.ros.audio_io import publish_pcm

    n = publish_pcm(pcm, args.rate, args.topic, args.chunk_s, realtime=not args.fast)
    print(f"published {n} chunks ({len(pcm) / args.rate:.2f} s) on {args.topic!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
