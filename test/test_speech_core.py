"""Speech core without a recogniser: PCM decoding, resampling, WAV files, the vocabulary and its
grammar, and the streaming utterance segmenter (incl. a 10-minute stream)."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from lens_ros.speech.audio import (StreamResampler, add_noise, clipped_fraction, decode_pcm,
                                   encode_pcm, float_to_pcm16, level_dbfs, read_wav, resample,
                                   write_wav)
from lens_ros.speech.recognizer import SpeechConfig
from lens_ros.speech.segmenter import FRAME_S, UtteranceSegmenter, VADConfig
from lens_ros.speech.types import AudioFormatError, VocabularyError
from lens_ros.speech.vocabulary import (CommandMatcher, Vocabulary, build_jsgf, load_vocabulary,
                                        normalize_text, resolve_pronunciations)

RATE = 16000


def tone(seconds: float, freq: float = 440.0, dbfs: float = -20.0, rate: int = RATE):
    t = np.arange(int(seconds * rate)) / rate
    return float_to_pcm16(10 ** (dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * freq * t))


def quiet(seconds: float, rng=None, dbfs: float = -70.0, rate: int = RATE):
    rng = rng or np.random.default_rng(0)
    return float_to_pcm16(rng.standard_normal(int(seconds * rate)) * 10 ** (dbfs / 20))


# -- PCM ---------------------------------------------------------------------------------------
def test_s16_stereo_is_mixed_to_mono():
    left, right = np.array([100, -200, 3000], np.int16), np.array([300, 200, -1000], np.int16)
    data = np.stack([left, right], axis=1).astype("<i2").tobytes()
    pcm, clipped = decode_pcm(data, "S16LE", 2)
    assert pcm.dtype == np.int16 and pcm.tolist() == [200, 0, 1000] and clipped == 0


def test_f32_roundtrip_and_clipping_count():
    pcm = np.array([0, 16384, -16384, 32767, -32768], np.int16)
    back, clipped = decode_pcm(encode_pcm(pcm, "F32LE"), "F32LE", 1)
    assert np.abs(back.astype(int) - pcm).max() <= 1 and clipped == 0
    loud = np.array([0.5, 1.5, -2.0], "<f4").tobytes()
    out, clipped = decode_pcm(loud, "f32le", 1)
    assert clipped == 2 and out.tolist() == [16384, 32767, -32768]


@pytest.mark.parametrize("data, encoding, channels, words", [
    (b"\x00" * 8, "MP3", 1, "encoding 'MP3'"),
    (b"\x00" * 7, "S16LE", 1, "7 bytes"),
    (b"\x00" * 12, "F32LE", 2, "12 bytes"),
    (b"\x00" * 8, "S16LE", 0, "channels=0"),
    (np.array([np.nan], "<f4").tobytes(), "F32LE", 1, "NaN"),
])
def test_bad_pcm_bytes_raise_a_clear_error(data, encoding, channels, words):
    with pytest.raises(AudioFormatError, match=words):
        decode_pcm(data, encoding, channels)


@pytest.mark.parametrize("rate", [0, 100, 1_000_000, 16000.5, "fast"])
def test_unusable_sample_rates_are_refused(rate):
    with pytest.raises(AudioFormatError, match="sample rate"):
        resample(np.zeros(10, np.int16), rate, RATE)


@pytest.mark.parametrize("rate_in", [8000, 22050, 44100, 48000])
def test_resampling_keeps_a_tone_and_is_independent_of_chunking(rate_in):
    x = tone(1.0, 440.0, -10.0, rate_in)
    y = resample(x, rate_in, RATE)
    assert len(y) == RATE
    ref = tone(1.0, 440.0, -10.0, RATE).astype(float)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 0.002 * 32768  # < -54 dB error
    r, parts, i = StreamResampler(rate_in, RATE), [], 0
    rng = np.random.default_rng(rate_in)
    while i < len(x):
        n = int(rng.integers(1, 2000))
        parts.append(r.process(x[i:i + n]))
        i += n
    parts.append(r.process(np.zeros(0, np.int16), final=True))
    assert np.array_equal(np.concatenate(parts), y)


def test_downsampling_removes_content_above_the_new_nyquist():
    y = resample(tone(1.0, 11000.0, -6.0, 48000), 48000, RATE)  # 11 kHz > 8 kHz Nyquist
    assert level_dbfs(y) < -50


def test_wav_roundtrip_and_8bit_error(tmp_path):
    pcm = tone(0.3)
    write_wav(tmp_path / "a.wav", pcm, 22050)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050 and np.array_equal(back, pcm)
    import wave
    with wave.open(str(tmp_path / "b.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(1), w.setframerate(8000), w.writeframes(b"\x80" * 80)
    with pytest.raises(AudioFormatError, match="8-bit"):
        read_wav(tmp_path / "b.wav")
    with pytest.raises(AudioFormatError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")


def test_noise_is_mixed_at_the_requested_snr():
    speech = np.concatenate([np.zeros(8000, np.int16), tone(1.0, 300.0, -12.0)])
    noisy = add_noise(speech, 10.0, np.random.default_rng(0))
    noise = noisy.astype(float) - speech
    snr = 10 * np.log10(np.mean(speech[8000:].astype(float) ** 2) / np.mean(noise ** 2))
    assert abs(snr - 10.0) < 0.3


# -- vocabulary and grammar --------------------------------------------------------------------
def test_default_vocabulary_builds_a_grammar_for_the_example_commands():
    v = load_vocabulary()
    jsgf = build_jsgf(v)
    assert jsgf.startswith("#JSGF V1.0;") and "public <command>" in jsgf
    m = CommandMatcher(v)
    for text in ["the red mug left of the laptop", "The red cube.", "pick up the green bottle",
                 "the second largest ball", "the second cube from the left",
                 "the ball colored like the sky", "something red you could roll",
                 "the party hat", "find the book closest to the camera",
                 "the small striped cylinder behind the large yellow object"]:
        assert m.matches(text), text
    for text in ["", "red cube", "the red", "please close the door", "the red cube the",
                 "the cube left of", "pick up"]:
        assert not m.matches(text), text


def test_default_vocabulary_covers_the_synthetic_scene_commands():
    """Every command the synthetic scene generator can produce (all levels, 40 scenes) is
    inside the default grammar, so spoken commands can drive the demo."""
    from lens_ros.synthetic.expressions import LEVELS, candidates
    from lens_ros.synthetic.scene import SceneConfig, make_scene

    m = CommandMatcher(load_vocabulary())
    config = SceneConfig(width=96, height=72) if "width" in SceneConfig.__dataclass_fields__ \
        else None
    texts = set()
    for seed in range(40):
        scene = make_scene(np.random.default_rng(seed), config=config)
        width = scene.rgb.shape[1]
        for level in LEVELS:
            texts |= {c.text for c in candidates(scene.objects, level, width)}
    assert len(texts) > 200
    missing = sorted(t for t in texts if not m.matches(t))
    assert not missing, f"{len(missing)} of {len(texts)} not in the grammar, e.g. {missing[:5]}"


def test_normalize_text():
    assert normalize_text("  The RED mug, please!  ") == "the red mug please"


@pytest.mark.parametrize("text, words", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("objects: [cube\n", "not valid YAML"),
    ("- cube\n", "must be a mapping"),
    ("objects: [cube]\nnouns: [ball]\n", "unknown keys \\['nouns'\\]"),
    ("objects: cube\n", "must be a list"),
    ("objects: [red-cube]\n", "letters"),
    ("verbs: [find]\n", "defines no command"),
    ("objects: [cube]\npronunciations: {cube: k y oo b}\n", "CMU phones"),
])
def test_bad_vocabulary_files_give_clear_errors(tmp_path, text, words):
    path = tmp_path / "vocab.yaml"
    path.write_text(text)
    with pytest.raises(VocabularyError, match=words):
        load_vocabulary(path)


def test_missing_vocabulary_file_names_the_path(tmp_path):
    with pytest.raises(VocabularyError, match="nope.yaml"):
        load_vocabulary(tmp_path / "nope.yaml")


def test_pronunciations_compounds_custom_and_missing():
    cmu = {"left": "L EH F T", "most": "M OW S T", "the": "DH AH", "cube": "K Y UW B"}
    v = Vocabulary(objects=["cube"], superlatives=["leftmost"],
                   pronunciations={"gizmo": "G IH Z M OW"}, phrases=["the gizmo"])
    out = resolve_pronunciations(v, cmu.get)
    assert out == {"leftmost": "L EH F T M OW S T", "gizmo": "G IH Z M OW"}
    with pytest.raises(VocabularyError, match=r"\['blorptastic'\].*pronunciations"):
        resolve_pronunciations(Vocabulary(objects=["blorptastic"]), cmu.get)


def test_empty_slots_are_left_out_of_the_grammar():
    v = Vocabulary(objects=["cube"], colours=["red"])
    m = CommandMatcher(v)
    assert m.matches("the red cube") and not m.matches("pick up the cube")
    only_phrases = Vocabulary(determiners=[], phrases=["stop", "go home"])
    assert "public <command> = <phrase>;" in build_jsgf(only_phrases)
    assert CommandMatcher(only_phrases).matches("go home")


# -- segmenter ---------------------------------------------------------------------------------
def _burst_stream(rng):
    """0.5 s quiet, 1.0 s tone, 0.3 s gap, 0.4 s tone, 1.2 s quiet, 0.1 s click, 1 s quiet."""
    parts = [quiet(0.5, rng), tone(1.0), quiet(0.3, rng), tone(0.4, 600), quiet(1.2, rng),
             tone(0.1, 900), quiet(1.0, rng)]
    return np.concatenate(parts)


@pytest.mark.parametrize("chunk", [1, 160, 1234, None])
def test_segmenter_bridges_pauses_drops_clicks_and_ignores_chunking(chunk):
    x = _burst_stream(np.random.default_rng(1))
    seg = UtteranceSegmenter(VADConfig(), RATE)
    step = chunk or len(x)
    utts = [u for i in range(0, len(x), step) for u in seg.feed(x[i:i + step])] + seg.flush()
    assert [u.status for u in utts] == ["ok", "too_short"]
    first = utts[0]
    # speech 1.0 + 0.3 pause + 0.4 in one utterance; starts pre_roll before the onset
    assert abs(first.start_sample / RATE - (0.5 - 0.3)) < 0.03
    assert 1.35 <= first.speech_s <= 1.45  # 1.0 + 0.4 s of tone; the pause is not speech
    assert abs(first.duration_s - (0.3 + 1.7 + 0.5)) < 0.05  # pre-roll + speech + hangover
    assert first.pcm.dtype == np.int16 and first.clipped_fraction == 0.0


def test_segmenter_cuts_long_noise_and_then_adapts_to_it():
    rng = np.random.default_rng(2)
    noise = float_to_pcm16(rng.standard_normal(RATE * 20) * 0.05)  # 20 s at -26 dBFS
    x = np.concatenate([quiet(1.0, rng), noise, tone(1.0, dbfs=-3.0), noise[:RATE * 2]])
    seg = UtteranceSegmenter(VADConfig(max_utterance_s=5.0), RATE)
    utts = seg.feed(x) + seg.flush()
    assert utts[0].status == "too_long" and abs(utts[0].duration_s - 5.0) < 0.02
    # after the cut the floor follows the noise: the loud tone is found again as speech
    assert utts[-1].status == "ok" and abs(utts[-1].speech_s - 1.0) < 0.1
    assert sum(u.status == "too_long" for u in utts) <= 2


def test_silence_and_steady_noise_give_no_utterance():
    rng = np.random.default_rng(3)
    for x in (np.zeros(RATE * 5, np.int16), quiet(5.0, rng, -40.0),
              float_to_pcm16(rng.standard_normal(RATE * 5) * 0.1)):
        seg = UtteranceSegmenter(VADConfig(), RATE)
        assert seg.feed(x) + seg.flush() == []


def test_ten_minute_stream_is_bounded_in_memory():
    """10 minutes of generated audio (quiet bed, a 1 s tone burst every 7 s, a 40 s stretch of
    loud noise) in 50 ms chunks: memory held never exceeds max utterance + pre-roll + a frame,
    and the Python heap does not grow with the stream length."""
    cfg = VADConfig(max_utterance_s=6.0)
    seg = UtteranceSegmenter(cfg, RATE)
    bound = int((cfg.max_utterance_s + cfg.pre_roll_s + cfg.onset_s + 2 * FRAME_S) * RATE)
    rng = np.random.default_rng(4)
    chunk = RATE // 20
    statuses, peak, tracemalloc_peak = [], 0, 0
    tracemalloc.start()
    for i in range(10 * 60 * 20):
        t = i / 20
        x = quiet(0.05, rng)
        if 300 <= t < 340:
            x = float_to_pcm16(rng.standard_normal(chunk) * 0.2)
        elif t % 7 < 1.0:
            x = tone(0.05, 500.0, -15.0)
        statuses += [u.status for u in seg.feed(x)]
        peak = max(peak, seg.buffered_samples)
        if i == 2000:
            tracemalloc.reset_peak()
    tracemalloc_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= bound
    assert tracemalloc_peak < 4 * bound * 8 + 2_000_000  # a few utterance copies, not the stream
    assert statuses.count("ok") >= 75  # 86 bursts, minus those inside the noise stretch
    assert 1 <= statuses.count("too_long") <= 7


def test_speech_config_rejects_bad_values():
    with pytest.raises(ValueError, match="backend 'cloud'"):
        SpeechConfig(backend="cloud")
    with pytest.raises(ValueError, match="confidence_threshold"):
        SpeechConfig(confidence_threshold=1.5)
    with pytest.raises(ValueError, match="max_utterance_s"):
        VADConfig(min_utterance_s=5.0, max_utterance_s=2.0)
    with pytest.raises(ValueError, match="unknown speech settings"):
        SpeechConfig.from_dict({"backend": "grammar", "volume": 11})
    cfg = SpeechConfig.from_dict({"vad": {"hangover_s": 0.7}})
    assert cfg.vad.hangover_s == 0.7 and cfg.to_dict()["vad"]["hangover_s"] == 0.7


def test_clipped_fraction():
    x = np.array([0, 32767, -32768, 100, 32766], np.int16)
    assert clipped_fraction(x) == pytest.approx(3 / 5)
