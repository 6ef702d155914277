"""Offline speech recognition for spoken commands: grammar-constrained pocketsphinx (default),
dictation, optional Whisper; utterance segmentation; vocabulary-to-JSGF grammar builder.

    from lens_ros.speech import SpeechConfig, SpeechRecognizer
    rec = SpeechRecognizer(SpeechConfig())             # grammar backend, default vocabulary
    for result in rec.feed(pcm16, 16000):              # (N,) int16 mono chunks of a stream
        if result.accepted:
            print(result.text)

Nothing here imports rclpy; ``lens_ros.ros.speech_node`` is the ROS adapter.
"""
from lens_ros.speech.recognizer import (SpeechConfig, SpeechRecognizer, SpeechResult,
                                        make_backend)
from lens_ros.speech.segmenter import Utterance, UtteranceSegmenter, VADConfig
from lens_ros.speech.types import (ASRBackend, AudioFormatError, BackendUnavailableError,
                                   SpeechError, Transcript, VocabularyError)
from lens_ros.speech.vocabulary import (CommandMatcher, Vocabulary, build_jsgf,
                                        load_vocabulary)

__all__ = ["ASRBackend", "AudioFormatError", "BackendUnavailableError", "CommandMatcher",
           "SpeechConfig", "SpeechError", "SpeechRecognizer", "SpeechResult", "Transcript",
           "Utterance", "UtteranceSegmenter", "VADConfig", "Vocabulary", "VocabularyError",
           "build_jsgf", "load_vocabulary", "make_backend"]
