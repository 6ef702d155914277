"""speech_node's parameters: names, defaults, descriptions and ranges, declared with
descriptors, and read back as a :class:`SpeechConfig`."""
from __future__ import annotations

from dataclasses import fields

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from lens_ros.speech.recognizer import BACKENDS, SpeechConfig
from lens_ros.speech.segmenter import VADConfig

#: parameters applied at once; every other one takes effect at the next configure/activate
RUNTIME = ("confidence_threshold", "accept_out_of_grammar")
ECHO_MODES = ("off", "log", "speak")

_CFG, _VAD = SpeechConfig(), VADConfig()
#: (name, default, description, (low, high) or choices) of every parameter
PARAMETERS = (
    ("backend", _CFG.backend, "Recogniser: grammar (pocketsphinx + JSGF built from "
     "vocabulary_file), dictation (pocketsphinx English LM) or whisper (model_dir).", BACKENDS),
    ("vocabulary_file", _CFG.vocabulary_file, "Vocabulary YAML of the command language ('' = "
     "config/speech_vocabulary.yaml).", None),
    ("model_dir", _CFG.model_dir, "Local Whisper model directory (backend whisper).", None),
    ("confidence_threshold", _CFG.confidence_threshold, "Utterances below this confidence are "
     "reported, not forwarded.", (0.0, 1.0)),
    ("accept_out_of_grammar", _CFG.accept_out_of_grammar, "Forward text outside the "
     "vocabulary's language (free-text backends).", None),
    ("sample_rate", _CFG.sample_rate, "Recogniser rate, Hz; other input rates are resampled.",
     (8000, 48000)),
    ("max_alternatives", _CFG.max_alternatives, "N-best alternatives per transcript (costly "
     "with the grammar backend).", (0, 10)),
    ("vad.threshold_db", _VAD.threshold_db, "Speech is this many dB above the noise floor.",
     (0.0, 60.0)),
    ("vad.min_level_db", _VAD.min_level_db, "Absolute speech gate, dBFS.", (-100.0, 0.0)),
    ("vad.onset_s", _VAD.onset_s, "Consecutive speech that opens an utterance, s.", (0.01, 1.0)),
    ("vad.hangover_s", _VAD.hangover_s, "Non-speech that closes an utterance, s.", (0.05, 5.0)),
    ("vad.pre_roll_s", _VAD.pre_roll_s, "Audio kept from before the onset, s.", (0.0, 2.0)),
    ("vad.min_utterance_s", _VAD.min_utterance_s, "Shorter speech is reported too_short.",
     (0.01, 10.0)),
    ("vad.max_utterance_s", _VAD.max_utterance_s, "Longer sound is cut and reported too_long.",
     (0.5, 60.0)),
    ("vad.floor_rise_s", _VAD.floor_rise_s, "Time constant of the noise floor rising, s.",
     (0.1, 600.0)),
    ("microphone_device", "", "sounddevice input device (name or index); '' = no microphone, "
     "listen to the audio topic only. Needs `pip install sounddevice` + libportaudio2.", None),
    ("microphone_rate", 16000, "Microphone sample rate, Hz.", (8000, 48000)),
    ("microphone_block_s", 0.1, "Microphone block length, s.", (0.01, 1.0)),
    ("confirm_echo", "off", "Say back what was understood on speech/echo: off, log (topic "
     "and log line) or speak (also aloud with espeak-ng; mind the microphone hearing it).",
     ECHO_MODES),
    ("echo_voice", "en-us", "espeak-ng voice of confirm_echo speak.", None),
    ("confirm_below", 0.0, "Hold accepted commands below this confidence until 'yes' / "
     "speech/confirm True (0 = forward at once).", (0.0, 1.0)),
    ("confirm_timeout_s", 8.0, "A held command is dropped after this long without an answer, "
     "s.", (0.5, 120.0)),
    ("queue_size", 4, "Utterances waiting for the recogniser; overflow is reported dropped.",
     (1, 100)),
    ("autostart", True, "Configure and activate at start.", None),
    ("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", (0.1, 60.0)),
)


def declare_speech_parameters(node) -> None:
    """Declare ``PARAMETERS`` with descriptors (description, range or choices)."""
    for name, default, text, limits in PARAMETERS:
        desc = ParameterDescriptor(description=text)
        if isinstance(limits, tuple) and isinstance(limits[0], str):
            desc.additional_constraints = f"one of {list(limits)}"
        elif limits is not None and isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(limits[0]), to_value=float(limits[1]), step=0.0)]
        elif limits is not None:
            desc.integer_range = [IntegerRange(from_value=int(limits[0]),
                                               to_value=int(limits[1]), step=1)]
        node.declare_parameter(name, default, desc)


def read_speech_config(node) -> SpeechConfig:
    """The pipeline parameters as a SpeechConfig (ValueError on a bad value)."""
    get = lambda name: node.get_parameter(name).value  # noqa: E731
    vad = VADConfig(**{f.name: float(get(f"vad.{f.name}")) for f in fields(VADConfig)})
    return SpeechConfig(**{f.name: get(f.name) for f in fields(SpeechConfig) if f.name != "vad"},
                        vad=vad)
