"""The LENS prompts, byte-exact, and the Qwen2-VL/2.5-VL chat template.

Sources (hustvl/LENS at 28cf510): ``src/open_r1/constants.py`` (system prompt ``default``,
question templates ``pr1_grounding`` and ``samr1_v4``) and ``demo.py:50-68`` (message layout,
image before text, ``add_generation_prompt=True``).
"""
from __future__ import annotations

#: ``QWEN2_SYS`` (registry key "default"); note the trailing space.
SYSTEM_PROMPT = "You are a helpful assistant. "

#: ``pr1_grounding``: the plain box question used by the released RefCOCO model.
PLAIN_TEMPLATE = "Output the bounding box of the {question} in the image."

#: ``SAMR1_V4_TEMPLATE``: Python string concatenation, no separator between the sentences.
REASONING_TEMPLATE = (
    'Locate "{question}", report the bbox coordinates in JSON format.'
    "Compare the difference between objects and find the most closely matched one."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the one bbox inside the interested object in JSON format."
    "i.e., <think>thinking process here</think><answer>answer here</answer>"
)

#: The Qwen2-VL / Qwen2.5-VL chat template (as on the hub); saved as ``chat_template.jinja``.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def question_text(command: str, reasoning: bool = False) -> str:
    """The user text for one referring expression, inserted unchanged (no added period)."""
    return (REASONING_TEMPLATE if reasoning else PLAIN_TEMPLATE).format(question=command)


def build_messages(command: str, reasoning: bool = False) -> list[dict]:
    """Chat messages as LENS builds them: system string, then user [image, text]."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "image"},
                                     {"type": "text", "text": question_text(command, reasoning)}]},
    ]


def render_prompt(command: str, reasoning: bool = False) -> str:
    """The chat-templated prompt with one ``<|image_pad|>`` placeholder, generation prompt added.

    Equal to ``processor.apply_chat_template(build_messages(...), add_generation_prompt=True)``
    with :data:`CHAT_TEMPLATE` (a test checks it); written out so that no Jinja runs per request.
    """
    return ("<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n"
            "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
            + question_text(command, reasoning) + "<|im_end|>\n<|im_start|>assistant\n")
