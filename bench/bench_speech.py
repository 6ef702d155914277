"""Speech benchmark: spoken commands by every English espeak-ng voice and variant, clean and in
white/pink noise, split BY VOICE into tuning and held-out voices (bench/speech_corpus.py).

Each clip goes through the whole pipeline speech_node runs (segmenter -> backend ->
confidence / grammar decision). Per split and condition it prints, for in-vocabulary commands:
exact (the only forwarded command is the spoken text), wrong (something else was forwarded),
refused (nothing forwarded); for near-misses with a word the vocabulary lacks ("oov") and
out-of-grammar sentences ("oog"): forwarded; for silence and noise: forwarded; and the
real-time factor (recognition CPU seconds / audio seconds). Then the held-out trade-off curve
(exact vs wrong over the confidence threshold).

  python bench/bench_speech.py                    # full run (~15 min on 2 busy cores)
  python bench/bench_speech.py --quick            # clean + pink 10 dB, fewer clips (~3 min)
  python bench/bench_speech.py --records r.json   # also save per-clip scores ...
  python bench/bench_speech.py --from-records r.json --tune   # ... and tune without decoding

Clips are synthesised once and cached under bench/.cache/speech (git-ignored).
Timings are from a shared machine: noisy, compare within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speech_corpus import Clip, build_corpus, is_standard  # noqa: E402

from lens_ros.speech.audio import add_noise  # noqa: E402
from lens_ros.speech.recognizer import SpeechConfig, SpeechRecognizer  # noqa: E402
from lens_ros.speech.sphinx import confidence_of  # noqa: E402
from lens_ros.speech.vocabulary import load_vocabulary  # noqa: E402

TARGETS = {"wrong_clean": 0.02, "wrong_10dB": 0.05, "oov": 0.05, "exact_clean": 0.80,
           "exact_tuning": 0.90, "oog": 0.02, "rtf": 0.2}
FULL_CONDITIONS = ("clean", "white 20", "white 10", "white 5", "pink 20", "pink 10", "pink 5")
QUICK_CONDITIONS = ("clean", "pink 10")


def framed(pcm: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """0.5 s of lead and tail (the VAD learns the background), then noise over the whole
    clip at the condition's SNR below the speech level."""
    gap = np.zeros(8000, np.int16)
    x = np.concatenate([gap, pcm, gap])
    if condition == "clean":
        return x
    colour, snr = condition.split()
    return add_noise(x, float(snr), np.random.default_rng(seed), colour)


def noise_only(seed: int) -> list[tuple[str, np.ndarray]]:
    """Clips with no speech: silence, white and pink noise, noise bursts."""
    rng = np.random.default_rng(seed)
    bursts = np.zeros(48000, np.int16)
    for k in range(3):
        bursts[16000 * k + 4000:16000 * k + 4000 + 1600] = \
            (rng.standard_normal(1600) * 3000).astype(np.int16)
    return [("silence", np.zeros(48000, np.int16)),
            ("white", (rng.standard_normal(48000) * 600).astype(np.int16)),
            ("pink", add_noise(np.full(48000, 1000, np.int16), 0.0, rng, "pink")),
            ("bursts", bursts)]


def decode(rec: SpeechRecognizer, x: np.ndarray) -> list[dict]:
    """Per utterance: text, pre-confidence reason code, raw scores."""
    out = []
    for r in rec.transcribe_clip(x, 16000):
        code = "" if r.accepted or r.code == "low_confidence" else r.code
        out.append({"text": r.text, "code": code, "scores": r.scores, "conf": r.confidence})
    return out


def run_split(rec, clips: list[Clip], conditions, n_noisy: int) -> list[dict]:
    """One record per clip and condition (noisy conditions use the first n_noisy clips of
    each kind)."""
    records = []
    for cond in conditions:
        seen: dict[str, int] = {}
        for k, clip in enumerate(clips):
            seen[clip.kind] = seen.get(clip.kind, 0) + 1
            if cond != "clean" and seen[clip.kind] > n_noisy:
                continue
            x = framed(clip.audio(), cond, seed=k)
            t0 = time.process_time()
            utts = decode(rec, x)
            records.append({"cond": cond, "kind": clip.kind, "text": clip.text,
                            "voice": clip.voice, "utts": utts, "cpu": time.process_time() - t0,
                            "audio_s": len(x) / 16000})
    return records


def confidence(utt: dict, params: dict) -> float:
    """The grammar backend's confidence re-computed with ``params`` from the saved scores;
    other backends' own confidence."""
    return confidence_of(utt["scores"], **params) if "lr" in utt["scores"] else utt["conf"]


def forwarded(rec: dict, params: dict, threshold: float) -> list[str]:
    return [u["text"] for u in rec["utts"] if not u["code"] and u["text"]
            and confidence(u, params) >= threshold]


def summarize(records: list[dict], params: dict, threshold: float) -> dict:
    """{cond: {exact, wrong, refused, n, oov, n_oov, oog, n_oog, rtf}} (rates 0..1)."""
    out: dict = {}
    for r in records:
        m = out.setdefault(r["cond"], {"exact": 0, "wrong": 0, "refused": 0, "n": 0, "oov": 0,
                                       "n_oov": 0, "oog": 0, "n_oog": 0, "cpu": 0.0, "aud": 0.0})
        fwd = forwarded(r, params, threshold)
        m["cpu"] += r["cpu"]
        m["aud"] += r["audio_s"]
        if r["kind"] == "command":
            m["n"] += 1
            key = "exact" if fwd == [r["text"]] else "wrong" if fwd else "refused"
            m[key] += 1
        else:
            m[f"n_{r['kind']}"] += 1
            m[r["kind"]] += bool(fwd)
    return out


def pct(a: int, n: int) -> str:
    return f"{a}/{n} = {100 * a / max(n, 1):.1f} %"


def report(name: str, records: list[dict], params: dict, threshold: float) -> dict:
    s = summarize(records, params, threshold)
    for cond, m in s.items():
        print(f"{name:18s} {cond:9s} commands exact {pct(m['exact'], m['n'])}, wrong forwarded "
              f"{pct(m['wrong'], m['n'])}, refused {pct(m['refused'], m['n'])} | oov forwarded "
              f"{pct(m['oov'], m['n_oov'])} | oog forwarded {pct(m['oog'], m['n_oog'])} | RTF "
              f"{m['cpu'] / max(m['aud'], 1e-9):.3f}")
    return s


def curve(records: list[dict], params: dict, conds=("clean", "pink 10", "white 10")) -> None:
    """Held-out exact / wrong / oov-forwarded / oog-forwarded over the decision threshold,
    in raw score units (lr + word_weight * word_lr; confidence 0.5 sits at the center)."""
    for cond in conds:
        recs = [r for r in records if r["cond"] == cond]
        if not recs:
            continue
        line = []
        for x in range(-30, 11, 4):
            m = summarize(recs, {**params, "center": float(x)}, 0.5)[cond]
            line.append(f"{x}: {100 * m['exact'] / max(m['n'], 1):.0f}/"
                        f"{100 * m['wrong'] / max(m['n'], 1):.0f}/"
                        f"{100 * m['oov'] / max(m['n_oov'], 1):.0f}/"
                        f"{100 * m['oog'] / max(m['n_oog'], 1):.0f}")
        print(f"heldout curve {cond} (score threshold: exact/wrong/oov fwd/oog fwd %): " +
              ", ".join(line))


def ceiling(name: str, records: list[dict]) -> None:
    """How often the best hypothesis is the spoken command at all (no threshold can forward
    more exact commands), for standard and character variants, clean."""
    for family in ("standard", "character"):
        recs = [r for r in records if r["cond"] == "clean" and r["kind"] == "command" and
                is_standard(r["voice"]) == (family == "standard")]
        ok = sum(any(u["text"] == r["text"] for u in r["utts"]) for r in recs)
        print(f"{name:18s} clean     best hypothesis = spoken command, {family} variants: "
              f"{pct(ok, len(recs))}")


def tune(records: list[dict]) -> dict:
    """Grid search on TUNING records: the most exact clean commands with wrong <= 1.5 %
    clean, <= 4 % pink 10 dB and oov forwarded <= 4 % (margins under the targets)."""
    best, best_params = (-1, 0), None
    for center in np.arange(-40.0, 10.01, 1.0):
        for weight in (0.0, 0.1, 0.2, 0.3, 0.5):
            params = {"center": float(center), "scale": 3.0, "word_weight": weight}
            s = summarize(records, params, 0.5)
            c, n10 = s.get("clean"), s.get("pink 10", s.get("clean"))
            if c["wrong"] > 0.015 * c["n"] or n10["wrong"] > 0.04 * n10["n"] or \
                    c["oov"] > 0.04 * c["n_oov"] or c["oog"] > 0.015 * max(c["n_oog"], 1):
                continue
            # most exact clean commands; among equals the fewest forwards of anything wrong
            bad = sum(m["wrong"] + m["oov"] + m["oog"] for m in s.values())
            if (c["exact"], -bad) > best:
                best, best_params = (c["exact"], -bad), params
    print(f"tuned on tuning voices: {best_params} (exact clean {best[0]}, wrong/oov/oog "
          f"forwarded over all conditions {-best[1]})")
    return best_params


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="clean + pink 10 dB, fewer clips")
    p.add_argument("--commands", type=int, default=0, help="commands per split (default "
                   "160, quick 50)")
    p.add_argument("--conditions", nargs="+", default=None, help="conditions to run, e.g. "
                   "clean 'pink 10' 'white 10' (default: all seven; quick: clean, pink 10)")
    p.add_argument("--records", default="", help="save per-clip scores to this JSON")
    p.add_argument("--from-records", default="", help="evaluate saved scores, no decoding")
    p.add_argument("--tune", action="store_true", help="grid-search the calibration on the "
                   "tuning voices and report both splits with it")
    p.add_argument("--backend", default="grammar", help="grammar, dictation or whisper")
    p.add_argument("--whisper-dir", default=os.environ.get("LENS_WHISPER_MODEL_DIR", ""),
                   help="local Whisper model directory (default $LENS_WHISPER_MODEL_DIR)")
    p.add_argument("--threshold", type=float, default=SpeechConfig().confidence_threshold)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from lens_ros.speech import sphinx
    params = {"center": sphinx.CONFIDENCE_CENTER, "scale": sphinx.CONFIDENCE_SCALE,
              "word_weight": sphinx.WORD_WEIGHT}
    if args.from_records:
        data = json.loads(Path(args.from_records).read_text())
    else:
        n = args.commands or (50 if args.quick else 160)
        conditions = args.conditions or (QUICK_CONDITIONS if args.quick else FULL_CONDITIONS)
        rec = SpeechRecognizer(SpeechConfig(backend=args.backend, model_dir=args.whisper_dir))
        vocab = load_vocabulary()
        data = {}
        for split in ("tuning", "heldout"):
            clips = build_corpus(vocab, split, n, n // 2, seed=0 if split == "tuning" else 1)
            voices = sorted({c.voice for c in clips})
            print(f"{split}: {len(clips)} clips ({n} commands, {n // 2} oov near-misses, "
                  f"{sum(c.kind == 'oog' for c in clips)} out-of-grammar), {len(voices)} "
                  f"voices of bases {sorted({c.base for c in clips})}; conditions "
                  f"{list(conditions)}")
            sys.stdout.flush()
            data[split] = run_split(rec, clips, conditions, max(n // 2, 20))
        noise = [{"cond": "no speech", "kind": name, "utts": decode(rec, pcm)}
                 for name, pcm in noise_only(0)]
        data["noise"] = noise
        if args.records:
            Path(args.records).write_text(json.dumps(data))
    if args.tune:
        params = tune(data["tuning"]) or params
    print(f"calibration {params}, threshold {args.threshold}, {os.cpu_count()} CPUs shared")
    for split in ("tuning", "heldout"):
        report(split, data[split], params, args.threshold)
        for family in ("standard", "character"):
            report(f"{split} {family[:4]}.", [r for r in data[split] if is_standard(
                r["voice"]) == (family == "standard")], params, args.threshold)
        ceiling(split, data[split])
    fwd_noise = [r["kind"] for r in data.get("noise", []) if forwarded(r, params, args.threshold)]
    print(f"silence/noise clips forwarding a command: {len(fwd_noise)}/"
          f"{len(data.get('noise', []))} {fwd_noise}")
    curve(data["heldout"], params)
    print(f"targets (held-out): wrong <= {TARGETS['wrong_clean']:.0%} clean, <= "
          f"{TARGETS['wrong_10dB']:.0%} at 10 dB; oov forwarded <= {TARGETS['oov']:.0%}; exact "
          f">= {TARGETS['exact_clean']:.0%} clean (tuning >= {TARGETS['exact_tuning']:.0%}); oog "
          f"forwarded <= {TARGETS['oog']:.0%}; RTF <= {TARGETS['rtf']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
