"""A chat request in neither dialect: turns with images, tools and output settings, and its Gemma 4 question."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from edge_agent.messages import ToolCall, ToolResponse, ToolSpec
from edge_agent.model.runtime.answer import Question
from edge_agent.prompt.chat import Message
from edge_agent.web.errors import ApiError

TurnRole = Literal["system", "user", "assistant", "tool"]
ToolChoice = Literal["auto", "none", "required"]


@dataclass
class Turn:
    """One message as a client sent it (either dialect), its images decoded."""

    role: TurnRole
    text: str = ""
    images: list[np.ndarray] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)  # 16 kHz mono clips
    tool_calls: list[tuple[str, ToolCall]] = field(default_factory=list)  # (call id, call) of an assistant turn
    tool_call_id: str | None = None  # a tool turn: the call it answers (OpenAI)
    tool_name: str | None = None  # a tool turn: the tool's name (Ollama)


@dataclass
class ChatRequest:
    """What to generate and how; sampling values left None take the model's generation_config defaults."""

    turns: list[Turn]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    schema: dict[str, Any] | None = None  # the answer must be JSON valid against it
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


def tool_response(text: str, name: str) -> ToolResponse:
    """A tool's result as the model reads it: a JSON object's fields, or one value."""
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    return ToolResponse(name, value)


def _answer_tools(steps: list[Message], turn: Turn, ids: dict[str, str]) -> None:
    """Attach a tool turn's result to the model turn that made the call (Gemma 4's native tool_responses)."""
    last = steps[-1] if steps else None
    if last is None or last.role != "model" or not last.tool_calls:
        raise ApiError("bad_request", "a tool message must follow an assistant message with tool calls")
    if turn.tool_name:
        name = turn.tool_name
    elif turn.tool_call_id is not None and turn.tool_call_id in ids:
        name = ids[turn.tool_call_id]
    else:  # by position: the n-th result answers the n-th call
        position = min(len(last.tool_responses), len(last.tool_calls) - 1)
        name = last.tool_calls[position].name
    responses = (*last.tool_responses, tool_response(turn.text, name))
    steps[-1] = replace(last, tool_responses=responses)


def _steps(turns: list[Turn]) -> list[Message]:
    """The turns after the first user turn as Gemma 4 messages; tool results go inside the calling model turn."""
    steps: list[Message] = []
    ids: dict[str, str] = {}
    for turn in turns:
        if turn.role == "tool":
            _answer_tools(steps, turn, ids)
        elif turn.role == "user":
            steps.append(Message("user", turn.text))
        else:
            ids.update((call_id, call.name) for call_id, call in turn.tool_calls)
            last = steps[-1] if steps else None
            if last is not None and last.tool_responses and not last.text and not turn.tool_calls:
                steps[-1] = replace(last, text=turn.text)  # the answer after the results ends the same turn
            else:
                steps.append(Message("model", turn.text, tool_calls=tuple(call for _, call in turn.tool_calls)))
    return steps


def build_question(request: ChatRequest, image_budget: int) -> Question:
    """The Gemma 4 question: system turns joined, the first user turn with every image and clip of the conversation
    (the prompt builder places media in that turn), later turns as steps."""
    system = "\n\n".join(turn.text.strip() for turn in request.turns if turn.role == "system" and turn.text.strip())
    rest = [turn for turn in request.turns if turn.role != "system"]
    if not any(turn.role == "user" for turn in rest):
        raise ApiError("bad_request", "the messages hold no user message")
    first = rest.pop(0) if rest[0].role == "user" else Turn("user")
    images = tuple(image for turn in [first, *rest] for image in turn.images)
    audio = tuple(clip for turn in [first, *rest] for clip in turn.audio)
    steps = _steps(rest)
    tools = () if request.tool_choice == "none" else request.tools
    return Question(
        first.text,
        images=images,
        audio=audio,
        system=system or None,
        image_budget=image_budget,
        tools=tools,
        steps=tuple(steps),
    )
