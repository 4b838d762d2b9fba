"""OpenAI's chat-completions request, as pydantic models (unknown fields ignored: clients send many)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from edge_agent.web.shared_models import Lenient, ToolDef


class ImageUrl(Lenient):
    """An image_url part's URL."""

    url: str = Field(max_length=512 * 2**20)


class InputAudio(Lenient):
    """An input_audio part: base64 data and its container format."""

    data: str = Field(max_length=512 * 2**20)
    format: Literal["wav", "mp3", "flac", "ogg"]


class ContentPart(Lenient):
    """One part of a message's content."""

    type: Literal["text", "image_url", "input_audio"]
    text: str | None = None
    image_url: ImageUrl | None = None
    input_audio: InputAudio | None = None


class FunctionCall(Lenient):
    """A call in an assistant message (arguments as JSON text)."""

    name: str = Field(min_length=1, max_length=128)
    arguments: str = Field(default="{}", max_length=2**20)


class ToolCallIn(Lenient):
    """OpenAI's tool call wrapper."""

    id: str | None = Field(default=None, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Lenient):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=128)


class NamedFunction(Lenient):
    """The function tool_choice names."""

    name: str


class NamedToolChoice(Lenient):
    """tool_choice naming one function."""

    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(Lenient):
    """response_format's json_schema."""

    name: str = "answer"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")


class ResponseFormat(Lenient):
    """response_format: text, any JSON object, or JSON valid against a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(Lenient):
    """stream_options."""

    include_usage: bool = False


class ChatCompletionRequest(Lenient):
    """POST /v1/chat/completions."""

    model: str = Field(max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    tools: list[ToolDef] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    response_format: ResponseFormat | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
