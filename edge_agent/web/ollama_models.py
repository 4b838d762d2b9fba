"""Ollama's chat and generate requests, as pydantic models (unknown fields ignored)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from edge_agent.web.shared_models import Lenient, ToolDef


class Options(Lenient):
    """The `options` this node applies (others, e.g. num_ctx, are accepted and ignored)."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    seed: int | None = None
    num_predict: int | None = None
    stop: list[str] | None = None


class FunctionCall(Lenient):
    """A call in an assistant message."""

    name: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallIn(Lenient):
    """Ollama's tool call wrapper."""

    function: FunctionCall


class ChatMessage(Lenient):
    """One message of /api/chat."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[str] | None = Field(default=None, max_length=64)
    tool_calls: list[ToolCallIn] | None = None
    tool_name: str | None = Field(default=None, max_length=128)


class Common(Lenient):
    """What /api/chat and /api/generate share."""

    model: str = Field(max_length=256)
    format: Literal["json", ""] | dict[str, Any] | None = None
    options: Options = Field(default_factory=Options)
    stream: bool = True
    keep_alive: str | int | float | None = None
    think: bool | str | None = None


class ChatBody(Common):
    """POST /api/chat."""

    messages: list[ChatMessage] = Field(default_factory=list, max_length=1000)
    tools: list[ToolDef] | None = Field(default=None, max_length=128)


class GenerateBody(Common):
    """POST /api/generate."""

    prompt: str = ""
    system: str | None = None
    images: list[str] | None = Field(default=None, max_length=64)
    raw: bool = False
