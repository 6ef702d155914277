"""Spoken commands synthesised with espeak-ng: test audio and ``lens-say``.

espeak-ng is a system package (``apt-get install espeak-ng``), not needed by anything else.
"""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np

from lens_ros.speech.audio import read_wav, resample
from lens_ros.speech.types import AudioFormatError


def synthesize(text: str, voice: str = "en-us", speed: int = 160, rate: int = 16000,
               pitch: int = 50) -> np.ndarray:
    """espeak-ng speech of ``text`` as (N,) int16 mono at ``rate`` Hz (3 dB headroom).

    ``voice`` is an espeak-ng voice with an optional variant ("en-gb-scotland+f3"), ``speed`` in
    words per minute, ``pitch`` espeak-ng's 0..99 pitch (50 = the voice's own).

    Raises FileNotFoundError when espeak-ng is not installed, RuntimeError when it fails.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed: apt-get install espeak-ng "
                                "(or speak into a microphone, see docs/speech.md)")
    cmd = [exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
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


def speak(text: str, voice: str = "en-us") -> str:
    """Say ``text`` aloud on the default audio output with espeak-ng (blocks until done).
    Returns "" on success, else what went wrong (never raises)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return "espeak-ng is not installed (apt-get install espeak-ng)"
    try:
        proc = subprocess.run([exe, "-v", voice, text], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"espeak-ng failed: {err}"
    return "" if proc.returncode == 0 else \
        f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}"
