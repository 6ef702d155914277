"""Optional ``whisper`` backend: an OpenAI Whisper model from a *local* directory.

Two layouts are recognised (no download ever happens; ``HF_HUB_OFFLINE`` is forced):

* Hugging Face transformers layout (``config.json`` + ``*.safetensors`` + tokenizer and
  ``preprocessor_config.json``), e.g. a copy of ``openai/whisper-tiny.en`` made on a machine
  with internet (``huggingface-cli download openai/whisper-tiny.en --local-dir DIR``). Runs on
  the transformers + torch already in the venv. Only safetensors weights are loaded (never
  pickles).
* CTranslate2 layout of ``faster-whisper`` (``model.bin`` + ``config.json`` +
  ``tokenizer.json``), used when the ``faster-whisper`` package is installed
  (``pip install -c requirements/constraints.txt faster-whisper``; it does not pull torch).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from lens_ros.speech.audio import to_rate
from lens_ros.speech.types import ASRBackend, BackendUnavailableError, Transcript
from lens_ros.speech.vocabulary import normalize_text


def whisper_layout(model_dir: str | Path) -> str:
    """"transformers", "ctranslate2", or raise BackendUnavailableError naming what is missing."""
    d = Path(model_dir) if model_dir else None
    if d is None or not d.is_dir():
        raise BackendUnavailableError(
            f"whisper model directory {str(model_dir)!r} does not exist; set model_dir to a "
            "local Whisper model (docs/speech.md, 'Whisper on a robot')")
    if (d / "model.bin").is_file():
        return "ctranslate2"
    if (d / "config.json").is_file() and any(d.glob("*.safetensors")):
        return "transformers"
    raise BackendUnavailableError(
        f"{d} holds no Whisper model: expected config.json + *.safetensors (transformers) or "
        f"model.bin (faster-whisper); found {sorted(p.name for p in d.iterdir())[:10]}")


class WhisperBackend(ASRBackend):
    """Whisper, decoding free text (greedy, English).

    Confidence: exp(mean log-probability of the generated tokens), 0..1 (transformers), or
    exp(avg_logprob) x (1 - no_speech_prob) (faster-whisper).

    Arguments:
      model_dir (str): local model directory (see module doc).
      device (str): "cpu" or "cuda".
      language (str): spoken language code.
    """

    name = "whisper"

    def __init__(self, model_dir: str, device: str = "cpu", language: str = "en"):
        self.layout = whisper_layout(model_dir)
        self.model_dir, self.device, self.language = str(model_dir), device, language
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if self.layout == "ctranslate2":
            try:
                from faster_whisper import WhisperModel
            except ImportError as err:
                raise BackendUnavailableError(
                    f"{model_dir} is a faster-whisper (CTranslate2) model but faster-whisper is "
                    "not installed: pip install -c requirements/constraints.txt "
                    "faster-whisper") from err
            self._model = WhisperModel(self.model_dir, device=device, compute_type="int8")
            return
        try:
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor
        except ImportError as err:
            raise BackendUnavailableError(f"transformers/torch are needed for {model_dir}: "
                                          f"{err}") from err
        try:
            self._processor = WhisperProcessor.from_pretrained(self.model_dir,
                                                               local_files_only=True)
            self._model = WhisperForConditionalGeneration.from_pretrained(
                self.model_dir, local_files_only=True, use_safetensors=True).to(device).eval()
        except (OSError, ValueError) as err:
            raise BackendUnavailableError(f"cannot load the Whisper model in {model_dir}: "
                                          f"{err}") from err
        self._torch = torch
        # a command is short; leave room for the 4 start tokens within the decoder's context
        self._max_new_tokens = max(1, min(64, self._model.config.max_target_positions - 8))

    def transcribe(self, pcm16: np.ndarray, rate: int) -> Transcript:
        t0 = time.perf_counter()
        audio = to_rate(pcm16, rate, self.sample_rate).astype(np.float32) / 32768.0
        if self.layout == "ctranslate2":
            segments, _ = self._model.transcribe(audio, language=self.language, beam_size=1)
            segments = list(segments)
            text = " ".join(s.text for s in segments)
            conf = float(np.mean([math.exp(s.avg_logprob) * (1.0 - s.no_speech_prob)
                                  for s in segments])) if segments else 0.0
        else:
            text, conf = self._generate(audio)
        text = normalize_text(text)
        return Transcript(text, conf if text else 0.0, [], (time.perf_counter() - t0) * 1e3,
                          "" if text else "nothing recognised")

    def _generate(self, audio: np.ndarray) -> tuple[str, float]:
        torch = self._torch
        feats = self._processor(audio, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            out = self._model.generate(feats.input_features.to(self.device),
                                       language=self.language, task="transcribe",
                                       return_dict_in_generate=True, output_scores=True,
                                       max_new_tokens=self._max_new_tokens)
            scores = self._model.compute_transition_scores(out.sequences, out.scores,
                                                           normalize_logits=True)
        text = self._processor.batch_decode(out.sequences, skip_special_tokens=True)[0]
        finite = scores[0][torch.isfinite(scores[0])]
        conf = float(torch.exp(finite.mean())) if finite.numel() else 0.0
        return text, conf

    def close(self) -> None:
        self._model = None
