"""OpenAI's dialect: /v1/models and /v1/chat/completions (text, images, tools, JSON schema, streaming SSE)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from edge_agent.messages import ToolCall, ToolSpec
from edge_agent.web.chat import ChatRequest, ToolChoice, Turn
from edge_agent.web.context import context, read_json
from edge_agent.web.errors import ApiError, invalid_body
from edge_agent.web.gate import Reply
from edge_agent.web.media import ImageLoader, decode_audio, decode_base64
from edge_agent.web.openai_models import ChatCompletionRequest, ChatMessage

ANY_JSON: dict[str, Any] = {"type": "object"}


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models: the node's one model."""
    name = context(request).gate.model_name
    return web.json_response(
        {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "edge-agent"}]}
    )


def _arguments(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except (ValueError, RecursionError):
        raise ApiError("bad_request", f"{where}: the arguments are not JSON") from None
    if not isinstance(value, dict):
        raise ApiError("bad_request", f"{where}: the arguments must be a JSON object")
    return value


async def _turn(message: ChatMessage, index: int, images: ImageLoader) -> Turn:
    where = f"messages.{index}"
    role = "system" if message.role == "developer" else message.role
    content = message.content
    texts: list[str] = [content] if isinstance(content, str) else []
    frames, clips = [], []
    for part_index, part in enumerate(content if isinstance(content, list) else []):
        what = f"{where}.content.{part_index}.{part.type}"
        if part.type == "text":
            texts.append(part.text or "")
        elif part.image_url is not None:
            frames.append(await images.from_url(part.image_url.url, what))
        elif part.input_audio is not None:
            data = decode_base64(part.input_audio.data, what)
            clips.append(await decode_audio(data, part.input_audio.format, what))
    calls = [
        (
            call.id or f"call_{uuid.uuid4().hex[:24]}",
            ToolCall(call.function.name, _arguments(call.function.arguments, where)),
        )
        for call in message.tool_calls or []
    ]
    if role != "user" and (frames or clips):
        raise ApiError("bad_request", f"{where}: images and audio are allowed in user messages only")
    return Turn(role, "\n".join(texts), frames, clips, calls, tool_call_id=message.tool_call_id)


def _tool_choice(body: ChatCompletionRequest) -> tuple[ToolChoice, tuple[ToolSpec, ...]]:
    tools = tuple(ToolSpec(t.function.name, t.function.description, t.function.parameters) for t in body.tools or ())
    choice = body.tool_choice
    if choice is None:
        return "auto", tools
    if isinstance(choice, str):
        return choice, tools
    chosen = tuple(tool for tool in tools if tool.name == choice.function.name)
    if not chosen:
        raise ApiError("bad_request", f"tool_choice names no declared tool: {choice.function.name!r}")
    return "required", chosen


def _schema(body: ChatCompletionRequest) -> dict[str, Any] | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ANY_JSON
    if fmt.json_schema is None or not fmt.json_schema.schema_:
        raise ApiError("bad_request", "response_format.json_schema.schema is required", param="response_format")
    return fmt.json_schema.schema_


async def parse_request(raw: dict[str, Any], images: ImageLoader) -> tuple[ChatCompletionRequest, ChatRequest]:
    """The body as this node's chat request; ApiError for anything it cannot take."""
    try:
        body = ChatCompletionRequest.model_validate(raw)
    except ValidationError as exc:
        raise invalid_body(exc) from None
    choice, tools = _tool_choice(body)
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    chat = ChatRequest(
        turns=[await _turn(message, index, images) for index, message in enumerate(body.messages)],
        tools=tools,
        tool_choice=choice,
        schema=_schema(body),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(s for s in stop if s),
    )
    return body, chat


def tool_calls_json(calls: list[ToolCall], streaming: bool = False) -> list[dict[str, Any]]:
    """OpenAI's tool_calls: ids, names and JSON-encoded arguments."""
    return [
        {
            **({"index": index} if streaming else {}),
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for index, call in enumerate(calls)
    ]


def usage(reply: Reply) -> dict[str, int]:
    """Token counts."""
    total = reply.prompt_tokens + reply.completion_tokens
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens, "total_tokens": total}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    ctx = context(request)
    raw = await read_json(request)
    ctx.gate.check_model(raw.get("model") if isinstance(raw.get("model"), str) else None)
    body, chat = await parse_request(raw, ctx.images)
    if body.stream:
        return await _stream(request, body, chat)
    reply = await ctx.gate.run(chat)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = tool_calls_json(reply.tool_calls)
    choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}
    return web.json_response(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model,
            "choices": [choice],
            "usage": usage(reply),
        }
    )


async def _stream(request: web.Request, body: ChatCompletionRequest, chat: ChatRequest) -> web.StreamResponse:
    """Server-sent events: `data: {chunk}` per piece of text, the finish, usage if asked, `data: [DONE]`."""
    gate = context(request).gate
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
    pieces = gate.stream(chat)
    first = await anext(pieces)  # before any header is sent: a refusal is still an HTTP error
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    async def send(delta: dict[str, Any], reason: str | None = None, extra: dict[str, Any] | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        chunk = {**head, "model": gate.model_name, "choices": [choice], **(extra or {})}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    await send({"role": "assistant", "content": ""})
    item: str | Reply = first
    try:
        while isinstance(item, str):
            await send({"content": item})
            item = await anext(pieces)
    except ApiError as exc:  # after the headers: the error goes into the stream
        await response.write(f"data: {json.dumps(exc.openai_body())}\n\n".encode())
        await response.write_eof()
        return response
    finally:
        await pieces.aclose()
    if item.tool_calls or (chat.tools and item.text):
        delta: dict[str, Any] = {"content": item.text or None}
        if item.tool_calls:
            delta["tool_calls"] = tool_calls_json(item.tool_calls, streaming=True)
        await send(delta)
    await send({}, item.finish_reason)
    if body.stream_options is not None and body.stream_options.include_usage:
        chunk = {**head, "model": gate.model_name, "choices": [], "usage": usage(item)}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
