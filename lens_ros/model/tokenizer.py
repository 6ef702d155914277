"""A small local byte-level BPE tokenizer with the Qwen2.5 special tokens (no hub needed).

Used by the ``tiny`` preset (tests) and as a starting point for self-trained models. Byte-level
BPE round-trips any text, so unseen words are still encoded (as more, shorter tokens).
"""
from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from lens_ros.model.prompts import PLAIN_TEMPLATE, REASONING_TEMPLATE, SYSTEM_PROMPT

#: Qwen2.5 special tokens in Qwen's order; in a local tokenizer they get ids 0..13.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

_OBJECTS = ("red mug", "blue cup", "green bottle", "yellow box", "laptop", "keyboard", "apple",
            "banana", "person", "dog", "cat", "chair", "table", "left", "right", "small", "large",
            "cube", "ball", "cylinder", "cone", "purple", "orange", "object", "the", "of", "on")


def default_corpus() -> list[str]:
    """Short training strings: the prompt templates, answers in LENS' formats, digits."""
    lines = [SYSTEM_PROMPT, "system user assistant"]
    for obj in _OBJECTS:
        lines.append(PLAIN_TEMPLATE.format(question=f"the {obj}"))
        lines.append(REASONING_TEMPLATE.format(question=f"the {obj} left of the table"))
        lines.append(f"<think>The {obj} is on the left.</think>"
                     f'<answer>{{"bbox_2d": [12, 34, 156, 178]}}</answer>')
        lines.append(f'[{{"bbox_2d": [10, 20, 110, 200], "label": "{obj}"}}]')
        lines.append(f"({obj}) (10,20),(110,200) [3, 4, 50, 60]")
    lines.append(" ".join(str(i) for i in range(1000)))
    return lines * 4


def build_bpe_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512,
                        extra_special_tokens: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer; special tokens first (ids 0..13), EOS ``<|im_end|>``.

    Arguments:
      corpus (list[str] | None): training strings; None uses :func:`default_corpus`.
      vocab_size (int): upper bound of the vocabulary (BPE stops earlier when out of merges).
      extra_special_tokens (list[str] | None): more special tokens appended after Qwen's.

    Returns:
      PreTrainedTokenizerFast with pad ``<|endoftext|>`` and left padding (batched generation).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = QWEN_SPECIAL_TOKENS + list(extra_special_tokens or [])
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus if corpus is not None else default_corpus(), trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                 pad_token="<|endoftext|>", additional_special_tokens=specials[1:])
    hf.padding_side = "left"
    return hf
