"""What every handler shares (the model gate, the image loader), and reading a JSON body safely."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edge_agent.web.errors import ApiError
from edge_agent.web.gate import ModelGate
from edge_agent.web.media import ImageLoader


@dataclass(frozen=True)
class ApiContext:
    """The server's shared parts."""

    gate: ModelGate
    images: ImageLoader
    version: str
    max_body: int


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    """The server's shared parts, from a request."""
    return request.app[CONTEXT]


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; ApiError for an oversize body, malformed JSON or anything but an object."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            "too_large", f"the body is larger than {context(request).max_body} bytes (http.max_body_mb)"
        ) from None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError("bad_request", f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise ApiError("bad_request", "the body must be a JSON object")
    return body
