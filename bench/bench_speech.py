"""Speech recognition benchmark on the WAV fixtures (test/data/speech): exact-match rate and
real-time factor per backend, clean and with pink background noise at 10 dB SNR.

Each clip goes through the whole pipeline speech_node runs (segmenter -> backend ->
confidence / grammar decision). "exact" counts clips whose only forwarded command equals the
synthesised text; "text" counts clips whose best hypothesis equals it (forwarded or not);
"false accepts" counts out-of-grammar sentences and babble that were forwarded.
RTF = recognition CPU seconds / audio seconds (below 1: faster than real time).

  .venv/bin/python bench/bench_speech.py [--backends grammar dictation whisper] [--snr 10]

The whisper backend runs when --whisper-dir (or LENS_WHISPER_MODEL_DIR) names a local model.
Timings are from a shared 2-core machine: noisy, compare within one run.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

from lens_ros.speech.audio import add_noise, read_wav
from lens_ros.speech.recognizer import SpeechConfig, SpeechRecognizer
from lens_ros.speech.types import BackendUnavailableError

FIXTURES = Path(__file__).resolve().parents[1] / "test" / "data" / "speech"
#: the earlier baseline (pocketsphinx on espeak-ng, 24 commands)
BASELINE = {"grammar": "22/24 = 0.92 (small JSGF)",
            "dictation": "1/24 = 0.04 (default LM)", "whisper": "-"}
TARGET_EXACT = 0.90


def load(kind_filter=None) -> list[tuple[dict, np.ndarray]]:
    with open(FIXTURES / "manifest.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for row in rows:
        if kind_filter is None or row["kind"] in kind_filter:
            pcm, rate = read_wav(FIXTURES / row["file"])
            out.append((row, pcm))
    return out


def framed_with_noise(pcm: np.ndarray, snr_db: float | None, seed: int) -> np.ndarray:
    """0.5 s of lead and tail (so the VAD learns the background), then pink noise over the
    whole clip at ``snr_db`` below the speech level (add_noise measures speech frames only)."""
    gap = np.zeros(8000, np.int16)
    x = np.concatenate([gap, pcm, gap])
    return x if snr_db is None else add_noise(x, snr_db, np.random.default_rng(seed))


def run(recognizer: SpeechRecognizer, clips, snr_db: float | None) -> dict:
    exact = text_ok = false_accepts = n_cmd = n_neg = 0
    cpu = audio_s = 0.0
    for k, (row, pcm) in enumerate(clips):
        x = framed_with_noise(pcm, snr_db, seed=k)
        t0 = time.process_time()
        results = recognizer.transcribe_clip(x, 16000)
        cpu += time.process_time() - t0
        audio_s += len(x) / 16000
        forwarded = [r.text for r in results if r.accepted]
        if row["kind"] == "command":
            n_cmd += 1
            exact += forwarded == [row["text"]]
            text_ok += any(r.text == row["text"] for r in results)
        else:
            n_neg += 1
            false_accepts += bool(forwarded)
    return {"exact": exact, "text": text_ok, "n": n_cmd, "fa": false_accepts, "n_neg": n_neg,
            "rtf": cpu / audio_s, "ms": 1000 * cpu / len(clips)}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=["grammar", "dictation", "whisper"],
                   help="backends to measure (whisper is skipped without a model dir)")
    p.add_argument("--snr", type=float, default=10.0, help="SNR of the noisy run, dB")
    p.add_argument("--whisper-dir", default=os.environ.get("LENS_WHISPER_MODEL_DIR", ""),
                   help="local Whisper model directory (default $LENS_WHISPER_MODEL_DIR)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N clips (0: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    clips = load()
    if args.limit:
        clips = clips[:args.limit]
    n_cmd = sum(r["kind"] == "command" for r, _ in clips)
    print(f"fixtures: {len(clips)} clips ({n_cmd} commands, 3 voices x 3 speeds; "
          f"{len(clips) - n_cmd} out-of-grammar/babble), seed 0..{len(clips)}, CPU "
          f"{os.cpu_count()} cores shared (timings noisy)")
    for name in args.backends:
        try:
            rec = SpeechRecognizer(SpeechConfig(backend=name, model_dir=args.whisper_dir,
                                                accept_out_of_grammar=name == "whisper"))
        except BackendUnavailableError as err:
            print(f"{name:9s} skipped: {err}")
            continue
        rec.transcribe_clip(clips[0][1], 16000)  # warm-up
        for label, snr in (("clean", None), (f"{args.snr:g} dB SNR", args.snr)):
            m = run(rec, clips, snr)
            print(f"{name:9s} {label:10s} exact {m['exact']}/{m['n']} = "
                  f"{m['exact'] / max(m['n'], 1):.3f} (target >= {TARGET_EXACT:.2f}; baseline "
                  f"{BASELINE.get(name, '-')}), best text exact {m['text'] / max(m['n'], 1):.3f}, "
                  f"false accepts {m['fa']}/{m['n_neg']}, RTF {m['rtf']:.3f} (real time = 1), "
                  f"{m['ms']:.0f} ms CPU per clip")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
