"""A word-level tokenizer for the ``demo`` preset: one token per word of the synthetic scenes'
closed vocabulary, one per pixel integer, the fixed LENS prompt pieces as single tokens.

Why: a model trained from scratch on CPU learns much faster
when every coordinate is ONE token (``0 .. max_coordinate``) and every word is one token. The
Qwen2.5 special tokens keep ids 0..13 (as :mod:`tokenizer`), so the preset's token ids match.

Encoding: Qwen specials and the fixed prompt chunks (system prompt, the LENS question templates'
prefix and suffix, ``<think>`` ...) are added tokens matched on the raw text; the rest is
lower-cased and split by :data:`PIECES` into words (with their leading space), integers,
``{"bbox_2d": [``, ``]}``, ``, ``, whitespace and single characters; anything not in the
vocabulary becomes ``<unk>``. Decoding concatenates the pieces, so a completion round-trips
exactly: ``<think>the large red cube</think><answer>{"bbox_2d": [12, 30, 41, 57]}</answer>``.
"""
from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from lens_ros.model.prompts import PLAIN_TEMPLATE, REASONING_TEMPLATE, SYSTEM_PROMPT
from lens_ros.model.tokenizer import QWEN_SPECIAL_TOKENS
from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE

#: pre-tokenizer pattern (the text is lower-cased first)
PIECES = r' ?[a-z]+| ?\d+|\{"bbox_2d": \[|\]\}|, |\s+|\S'
#: answer tags (plain added tokens: they survive ``skip_special_tokens``)
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
#: punctuation users may type around a command
PUNCTUATION = [".", ",", "?", "!", "'", '"', "-", ":", ";", "(", ")", "[", "]", "{", "}"]


def prompt_chunks() -> list[str]:
    """The fixed text of the chat-templated LENS prompts, as single tokens."""
    rprefix, rsuffix = REASONING_TEMPLATE.split("{question}")
    pprefix, psuffix = PLAIN_TEMPLATE.split("{question}")
    return ["system\n" + SYSTEM_PROMPT, "user\n", "assistant\n", "\n", rprefix, rsuffix,
            pprefix, psuffix]


def build_word_tokenizer(words, max_coordinate: int = DEMO_IMAGE_SIZE) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over ``words`` (lower-case) and the integers 0..``max_coordinate``.

    Arguments:
      words (Iterable[str]): the closed word list (e.g. ``lens_ros.synthetic.VOCABULARY``); each
        word gets two tokens, ``"w"`` and ``" w"``.
      max_coordinate (int): largest pixel integer with its own token (the LLM image side).
    Returns:
      PreTrainedTokenizerFast: Qwen specials at ids 0..13, pad ``<|endoftext|>``, EOS
      ``<|im_end|>``, unk ``<unk>``, left padding.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers

    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    for token in QWEN_SPECIAL_TOKENS + ["<unk>"] + TAGS + prompt_chunks():
        add(token)
    for token in ['{"bbox_2d": [', "]}", ", ", " "] + PUNCTUATION:
        add(token)
    for word in sorted({w.lower() for w in words} | {"list"}):
        add(word)
        add(" " + word)
    for i in range(max_coordinate + 1):
        add(str(i))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t in QWEN_SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, normalized=False, special=False)
                    for t in TAGS + prompt_chunks()])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                 pad_token="<|endoftext|>", unk_token="<unk>",
                                 additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
                                 clean_up_tokenization_spaces=False)
    hf.padding_side = "left"
    return hf
