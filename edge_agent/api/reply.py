"""The API's types: the options of a question, the reply, and the load error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from edge_agent.api.inputs import AudioLike, ImageLike
from edge_agent.messages import ToolCall

ToolChoice = Literal["auto", "required"]


class AskOptions(TypedDict, total=False):
    """What `Model.reply`, `ask` and `stream` take besides the question, the schema and the tools."""

    images: Sequence[ImageLike]  # paths, JPEG/PNG bytes, OpenCV (BGR) arrays or PIL images; before the text
    audio: Sequence[AudioLike]  # paths, WAV/FLAC bytes or 16 kHz mono float arrays; at most 30 s each
    system: str | None  # a system instruction
    max_new_tokens: int  # longest answer in tokens (default 256)
    tool_choice: ToolChoice  # "required": the answer must begin with a tool call
    thinking: bool  # let the model think first (its thoughts are not in the text)
    image_budget: int  # soft tokens per image: 70, 140, 280 (default), 560 or 1120


class ModelError(Exception):
    """The model cannot be loaded (not an export, a missing or corrupt file, not enough memory) or was closed."""


@dataclass(frozen=True)
class Reply:
    """Everything one answer produced."""

    text: str  # what a person reads: no thoughts, no tool-call markup, no special tokens
    value: Any = None  # the parsed JSON answer, when a schema was given
    tool_calls: tuple[ToolCall, ...] = ()  # the calls the model made, when tools were given
    finish_reason: str = ""  # eos, length, context, ...
    prompt_tokens: int = 0
    timings_ms: Mapping[str, float] | None = None  # preprocess_ms, encoder_ms, prefill_ms, decode_ms, ttft_ms
    decode_tokens_per_s: float = 0.0
    ids: tuple[int, ...] = ()  # the generated token ids
