"""Greedy generation helpers: the generation config, a text-callback streamer, a cancel check."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from transformers import GenerationConfig, StoppingCriteria
from transformers.generation.streamers import BaseStreamer


def eos_token_ids(generation_config: GenerationConfig) -> list[int]:
    """End-of-turn ids of a generation config as a list (Qwen: im_end and endoftext)."""
    eos = generation_config.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def greedy_config(base: GenerationConfig, max_new_tokens: int,
                  repetition_penalty: float | None) -> GenerationConfig:
    """``base`` (the checkpoint's) turned greedy: no sampling, one beam, ``max_new_tokens``.

    ``repetition_penalty`` None keeps the checkpoint's value (greedy decoding still applies it).
    """
    cfg = copy.deepcopy(base)
    cfg.do_sample = False
    cfg.num_beams = 1
    cfg.temperature = None
    cfg.top_p = None
    cfg.top_k = None
    cfg.max_new_tokens = int(max_new_tokens)
    cfg.max_length = None
    cfg.min_new_tokens = None
    if repetition_penalty is not None:
        cfg.repetition_penalty = float(repetition_penalty)
    return cfg


class TextCallbackStreamer(BaseStreamer):
    """Calls ``callback(text_so_far)`` with the decoded completion after every generated token.

    Only for batch size 1. The first ``put`` (the prompt) is skipped; special tokens are removed.
    """

    def __init__(self, tokenizer, callback: Callable[[str], None]) -> None:
        self.tokenizer = tokenizer
        self.callback = callback
        self.ids: list[int] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.ids.extend(int(v) for v in value.reshape(-1).tolist())
        self.callback(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def end(self) -> None:
        """Nothing to flush: every token was already reported."""


class CancelCriteria(StoppingCriteria):
    """Stops generation when ``cancel()`` returns True (polled once per generated token)."""

    def __init__(self, cancel: Callable[[], bool]) -> None:
        self.cancel = cancel
        self.fired = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        if not self.fired and self.cancel():
            self.fired = True
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool,
                          device=input_ids.device)


def completion_state(new_ids: torch.Tensor, eos_ids: list[int],
                     max_new_tokens: int) -> tuple[int, bool]:
    """(length up to and including the first EOS, truncated?) of one row of generated ids.

    Arguments:
      new_ids (torch.Tensor): (N,) ids generated after the prompt (right padding included).
    """
    ids = new_ids.tolist()
    for i, tok in enumerate(ids):
        if tok in eos_ids:
            return i + 1, False
    return len(ids), len(ids) >= max_new_tokens
