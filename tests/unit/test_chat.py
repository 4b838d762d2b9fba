"""Prompts equal what Gemma 4's published chat_template.jinja renders (strings rendered from it with jinja2)."""

from __future__ import annotations

import pytest

from edge_agent.prompt.chat import Message, render_prompt, strip_thoughts

# Rendered from the published template (llama.cpp models/templates/gemma4.jinja) with jinja2,
# trim_blocks and lstrip_blocks as transformers' apply_chat_template sets them, bos_token="<bos>".
GOLDEN = [
    (
        [Message("user", "Is the door open?")],
        False,
        "<bos><|turn>user\nIs the door open?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>",
    ),
    (
        [Message("system", "Be brief."), Message("user", "Is the door open?")],
        False,
        "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nIs the door open?<turn|>\n<|turn>model\n"
        "<|channel>thought\n<channel|>",
    ),
    (  # content [image, text]: the template writes the image placeholder between blank lines
        [Message("user", "Is the garage door open?", media=("image",))],
        False,
        "<bos><|turn>user\n\n\n<|image|>\n\nIs the garage door open?<turn|>\n<|turn>model\n"
        "<|channel>thought\n<channel|>",
    ),
    (  # content [audio, text]: no blank lines around audio; the text is trimmed
        [Message("user", " What did I say? ", media=("audio",))],
        False,
        "<bos><|turn>user\n<|audio|>What did I say?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>",
    ),
    (
        [Message("system", "Answer briefly."), Message("user", "What changed?", media=("image", "image", "audio"))],
        False,
        "<bos><|turn>system\nAnswer briefly.<turn|>\n<|turn>user\n\n\n<|image|>\n\n\n\n<|image|>\n\n<|audio|>"
        "What changed?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>",
    ),
    (
        [Message("user", "Is the door open?")],
        True,
        "<bos><|turn>system\n<|think|><turn|>\n<|turn>user\nIs the door open?<turn|>\n<|turn>model\n",
    ),
    (
        [Message("system", "Be brief."), Message("user", "Hi")],
        True,
        "<bos><|turn>system\n<|think|>Be brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n",
    ),
    (
        [
            Message("user", "Hi"),
            Message("model", "<|channel>thought\nhmm<channel|>Hello!"),
            Message("user", "  Again  "),
        ],
        False,
        "<bos><|turn>user\nHi<turn|>\n<|turn>model\nHello!<turn|>\n<|turn>user\nAgain<turn|>\n<|turn>model\n"
        "<|channel>thought\n<channel|>",
    ),
]


@pytest.mark.parametrize(("messages", "thinking", "expected"), GOLDEN)
def test_prompts_equal_the_published_template(messages: list[Message], thinking: bool, expected: str) -> None:
    assert render_prompt(messages, thinking=thinking) == expected


def test_without_generation_prompt() -> None:
    assert render_prompt([Message("user", "Hi")], add_generation_prompt=False) == "<bos><|turn>user\nHi<turn|>\n"


def test_system_only_first() -> None:
    with pytest.raises(ValueError, match="only come first"):
        render_prompt([Message("user", "a"), Message("system", "b")])


def test_strip_thoughts() -> None:
    assert strip_thoughts("A<|channel>thought\nx<channel|>B") == "AB"
    assert strip_thoughts("no thought") == "no thought"
