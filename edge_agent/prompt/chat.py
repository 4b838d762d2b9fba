"""Gemma 4 prompts as data and pure functions: turns, thinking, and the generation prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edge_agent.messages import ToolCall, ToolResponse, ToolSpec
from edge_agent.prompt.tool_syntax import format_call, format_declaration, format_response

Role = Literal["system", "user", "model", "tool"]
Media = Literal["image", "audio", "video"]
# What the template writes for a content item of each type; the processor later expands the placeholder.
MEDIA_MARKUP: dict[Media, str] = {"image": "\n\n<|image|>\n\n", "audio": "<|audio|>", "video": "\n\n<|video|>\n\n"}


@dataclass(frozen=True)
class ChatFormat:
    """The markers of Gemma 4's chat format (from its chat_template.jinja)."""

    bos: str = "<bos>"
    turn_start: str = "<|turn>"
    turn_end: str = "<turn|>"
    think: str = "<|think|>"
    channel_start: str = "<|channel>"
    channel_end: str = "<channel|>"

    @property
    def empty_thought(self) -> str:
        """What the generation prompt pre-fills when thinking is off."""
        return f"{self.channel_start}thought\n{self.channel_end}"


GEMMA4 = ChatFormat()


@dataclass(frozen=True)
class Message:
    """One turn: captioned media (each caption's text, then its placeholder), then images/audio (rendered before the
    text, in order), text, tool calls, tool responses."""

    role: Role
    text: str = ""
    media: tuple[Media, ...] = ()
    captioned: tuple[tuple[str, Media], ...] = ()  # e.g. ("Reference image 'rex':", "image"), before `media`
    tool_calls: tuple[ToolCall, ...] = ()
    tool_responses: tuple[ToolResponse, ...] = ()


def render_prompt(
    messages: Sequence[Message],
    tools: Sequence[ToolSpec] = (),
    *,
    thinking: bool = False,
    add_generation_prompt: bool = True,
    fmt: ChatFormat = GEMMA4,
) -> str:
    """The prompt text exactly as Gemma 4's chat template renders these turns and tools."""
    out = [fmt.bos]
    turns = list(messages)
    if thinking or tools or (turns and turns[0].role == "system"):
        system = turns.pop(0).text.strip() if turns and turns[0].role == "system" else ""
        declarations = "".join(format_declaration(tool) for tool in tools)
        out.append(f"{fmt.turn_start}system\n{fmt.think if thinking else ''}{system}{declarations}{fmt.turn_end}\n")
    continues_model_turn = False
    for message in turns:
        if message.role == "system":
            raise ValueError("a system message may only come first")
        out.append(f"{fmt.turn_start}{message.role}\n")
        out += [format_call(call) for call in message.tool_calls]
        out += [format_response(response) for response in message.tool_responses]
        out += [caption.strip() + MEDIA_MARKUP[kind] for caption, kind in message.captioned]
        out += [MEDIA_MARKUP[kind] for kind in message.media]
        out.append(strip_thoughts(message.text, fmt) if message.role == "model" else message.text.strip())
        continues_model_turn = bool(message.tool_responses)
        if not (message.tool_responses and not message.text):
            out.append(f"{fmt.turn_end}\n")
    if add_generation_prompt:
        if not continues_model_turn:  # after tool responses the model's turn goes on
            out.append(f"{fmt.turn_start}model\n")
        if not thinking:
            out.append(fmt.empty_thought)
    return "".join(out)


def strip_thoughts(text: str, fmt: ChatFormat = GEMMA4) -> str:
    """A model turn without its thought channel, as the template re-renders earlier turns."""
    kept = []
    for part in text.split(fmt.channel_end):
        kept.append(part.split(fmt.channel_start)[0] if fmt.channel_start in part else part)
    return "".join(kept).strip()


def stop_strings(fmt: ChatFormat = GEMMA4) -> tuple[str, ...]:
    """Text that ends a model turn."""
    return (fmt.turn_end,)
