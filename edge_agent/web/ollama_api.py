"""Ollama's dialect: /api/version, tags, show, ps, chat and generate (images, tools, format, NDJSON streaming)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from edge_agent.messages import ToolCall, ToolSpec
from edge_agent.web.chat import ChatRequest, Turn
from edge_agent.web.context import ApiContext, context, read_json
from edge_agent.web.errors import ApiError, invalid_body
from edge_agent.web.gate import Reply
from edge_agent.web.media import decode_base64, decode_image
from edge_agent.web.ollama_models import ChatBody, Common, GenerateBody

OLLAMA_VERSION = "0.12.0"  # the Ollama API level these endpoints follow


def now() -> str:
    """Ollama's created_at."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _details(ctx: ApiContext) -> dict[str, Any]:
    model = ctx.gate.core.config.model
    return {
        "parent_model": "",
        "format": "onnx",
        "family": "gemma4",
        "families": ["gemma4"],
        "parameter_size": "",
        "quantization_level": str(model.variant),
    }


def _entry(ctx: ApiContext) -> dict[str, Any]:
    name = f"{ctx.gate.model_name.removesuffix(':latest')}:latest"
    return {"name": name, "model": name, "modified_at": now(), "size": 0, "digest": "", "details": _details(ctx)}


async def version(request: web.Request) -> web.Response:
    """GET /api/version."""
    return web.json_response({"version": OLLAMA_VERSION})


async def tags(request: web.Request) -> web.Response:
    """GET /api/tags: the node's one model."""
    return web.json_response({"models": [_entry(context(request))]})


async def ps(request: web.Request) -> web.Response:
    """GET /api/ps: the model, when it is loaded."""
    ctx = context(request)
    loaded = ctx.gate.core.model is not None
    running = {**_entry(ctx), "expires_at": "2999-01-01T00:00:00Z", "size_vram": 0}
    return web.json_response({"models": [running] if loaded else []})


async def show(request: web.Request) -> web.Response:
    """POST /api/show: details and capabilities of the model."""
    ctx = context(request)
    body = await read_json(request)
    name = body.get("model", body.get("name"))
    ctx.gate.check_model(name if isinstance(name, str) else None)
    loaded = ctx.gate.core.model
    capabilities = ["completion", "tools"]
    if loaded is None or loaded.files.modalities["image"]:
        capabilities.append("vision")
    info = {"general.architecture": "gemma4", "gemma4.context_length": ctx.gate.core.config.model.max_context}
    return web.json_response(
        {
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": _details(ctx),
            "model_info": info,
            "capabilities": capabilities,
            "modified_at": now(),
        }
    )


def _images(encoded: list[str] | None, where: str) -> list[Any]:
    return [decode_image(decode_base64(text, f"{where}.{i}"), f"{where}.{i}") for i, text in enumerate(encoded or [])]


def _settings(body: Common) -> dict[str, Any]:
    options = body.options
    if isinstance(body.format, dict):
        schema: dict[str, Any] | None = body.format
    else:
        schema = {"type": "object"} if body.format == "json" else None
    limit = options.num_predict if options.num_predict is not None and options.num_predict > 0 else None
    return {
        "schema": schema,
        "max_tokens": limit,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "top_k": options.top_k,
        "seed": options.seed,
        "stop": tuple(s for s in options.stop or () if s),
    }


def chat_request(body: ChatBody) -> ChatRequest:
    """/api/chat's body as this node's chat request."""
    turns = []
    for index, message in enumerate(body.messages):
        calls = [
            (f"call_{index}_{n}", ToolCall(c.function.name, c.function.arguments))
            for n, c in enumerate(message.tool_calls or [])
        ]
        images = _images(message.images, f"messages.{index}.images")
        if images and message.role != "user":
            raise ApiError("bad_request", f"messages.{index}: images are allowed in user messages only")
        turns.append(Turn(message.role, message.content or "", images, [], calls, tool_name=message.tool_name))
    tools = tuple(ToolSpec(t.function.name, t.function.description, t.function.parameters) for t in body.tools or ())
    return ChatRequest(turns, tools=tools, **_settings(body))


def _parsed(model: type[Common], raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_body(exc) from None


def _done(reply: Reply, base: dict[str, Any]) -> dict[str, Any]:
    return {
        **base,
        "done": True,
        "done_reason": "length" if reply.finish_reason == "length" else "stop",
        "total_duration": round(reply.total_s * 1e9),
        "load_duration": 0,
        "prompt_eval_count": reply.prompt_tokens,
        "prompt_eval_duration": round(reply.prefill_s * 1e9),
        "eval_count": reply.completion_tokens,
        "eval_duration": round(reply.decode_s * 1e9),
    }


def _message(text: str, calls: list[ToolCall] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [{"function": {"name": c.name, "arguments": dict(c.arguments)}} for c in calls]
    return message


async def chat(request: web.Request) -> web.StreamResponse:
    """POST /api/chat (stream: true unless said otherwise, as Ollama does)."""
    ctx = context(request)
    raw = await read_json(request)
    ctx.gate.check_model(raw.get("model") if isinstance(raw.get("model"), str) else None)
    body: ChatBody = _parsed(ChatBody, raw)
    base = {"model": body.model, "created_at": now()}
    if not body.messages:  # Ollama's way to load a model
        return web.json_response({**base, "message": _message(""), "done": True, "done_reason": "load"})
    chat_req = chat_request(body)
    return await _answer(request, chat_req, body.stream, base, "message")


async def generate(request: web.Request) -> web.StreamResponse:
    """POST /api/generate: one prompt (with images and a system text) as one user turn."""
    ctx = context(request)
    raw = await read_json(request)
    ctx.gate.check_model(raw.get("model") if isinstance(raw.get("model"), str) else None)
    body: GenerateBody = _parsed(GenerateBody, raw)
    base = {"model": body.model, "created_at": now()}
    if not body.prompt and not body.images:
        return web.json_response({**base, "response": "", "done": True, "done_reason": "load"})
    turns = [Turn("system", body.system)] if body.system else []
    turns.append(Turn("user", body.prompt, _images(body.images, "images")))
    return await _answer(request, ChatRequest(turns, **_settings(body)), body.stream, base, "response")


def _piece(field: str, text: str, calls: list[ToolCall] | None = None) -> dict[str, Any]:
    return {"message": _message(text, calls)} if field == "message" else {"response": text}


async def _answer(
    request: web.Request, chat_req: ChatRequest, stream: bool, base: dict[str, Any], field: str
) -> web.StreamResponse:
    gate = context(request).gate
    if not stream:
        reply = await gate.run(chat_req)
        return web.json_response(_done(reply, {**base, **_piece(field, reply.text, reply.tool_calls)}))
    pieces = gate.stream(chat_req)
    item: str | Reply = await anext(pieces)  # before the headers: a refusal is still an HTTP error
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        while isinstance(item, str):
            line = {**base, "created_at": now(), **_piece(field, item), "done": False}
            await response.write(json.dumps(line).encode() + b"\n")
            item = await anext(pieces)
    except ApiError as exc:  # after the headers: the error is the last line
        await response.write(json.dumps(exc.ollama_body()).encode() + b"\n")
        await response.write_eof()
        return response
    finally:
        await pieces.aclose()
    live = not chat_req.tools
    last = _piece(field, "" if live else item.text, item.tool_calls)
    await response.write(json.dumps(_done(item, {**base, "created_at": now(), **last})).encode() + b"\n")
    await response.write_eof()
    return response
