"""The HTTP server: routes of both dialects, bearer-token check, body limit, errors in each dialect's shape."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from edge_agent.agent.shared import AgentCore
from edge_agent.config.http import HttpConfig
from edge_agent.sinks.ask import LogEvery
from edge_agent.timeline import Timeline
from edge_agent.web import ollama_api, openai_api, status, timeline_api
from edge_agent.web.context import CONTEXT, ApiContext
from edge_agent.web.errors import ApiError
from edge_agent.web.gate import ModelGate
from edge_agent.web.media import ImageLoader
from edge_agent.web.recorder import StatusFeed

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HTTP_KINDS = {401: "unauthorized", 404: "not_found", 405: "bad_request", 413: "too_large"}


def error_response(request: web.Request, error: ApiError) -> web.Response:
    """The error in the dialect of the path: OpenAI's under /v1/, Ollama's elsewhere (busy is 503 there)."""
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else {}
    if request.path.startswith("/v1/"):
        if error.kind == "unauthorized":
            headers["WWW-Authenticate"] = "Bearer"
        return web.json_response(error.openai_body(), status=error.status, headers=headers)
    if error.kind == "unauthorized" and request.path.startswith("/status"):
        headers["WWW-Authenticate"] = 'Basic realm="edge-agent", charset="UTF-8"'  # the browser asks for the token
    status = 503 if error.kind == "busy" else error.status
    return web.json_response(error.ollama_body(), status=status, headers=headers)


def authorized(header: str, token: str) -> bool:
    """`Bearer <token>`, or HTTP Basic with the token as the password (what a browser sends for the page)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def make_middlewares(token: str | None) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    """Token check first, then every failure turned into the dialect's error."""

    refusals = LogEvery(log)  # a flood of bad requests costs one line a minute

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            refusals.warning("http: %s %s: %d %s", request.method, request.path, exc.status, exc.message)
            return error_response(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kind = _HTTP_KINDS.get(exc.status, "bad_request")
            return error_response(request, ApiError(kind, f"{request.method} {request.path}: {exc.reason}"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise  # the client went away
        except Exception:
            log.exception("http: %s %s failed", request.method, request.path)
            return error_response(request, ApiError("server", "internal error; see the node's log"))

    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None and not authorized(request.headers.get("Authorization", ""), token):
            raise ApiError("unauthorized", "a valid bearer token is required (Authorization: Bearer ...)")
        return await handler(request)

    return [errors, bearer]


async def root(_request: web.Request) -> web.Response:
    """GET /: what Ollama answers, so that clients probing the server find it."""
    return web.Response(text="Ollama is running (edge-agent)")


def make_app(
    core: AgentCore, config: HttpConfig, version: str, feed: StatusFeed, timeline: Timeline | None = None
) -> web.Application:
    """The aiohttp application over the agent's model queue (and `GET /api/timeline` with a timeline)."""
    token = config.token.get_secret_value() if config.token is not None else None
    max_body = round(config.max_body_mb * 2**20)
    app = web.Application(client_max_size=max_body, middlewares=make_middlewares(token))
    app[CONTEXT] = ApiContext(ModelGate(core, config), ImageLoader(config.fetch_urls, max_body), version, max_body)
    app.router.add_get("/", root)
    app.router.add_get("/v1/models", openai_api.list_models)
    app.router.add_post("/v1/chat/completions", openai_api.chat_completions)
    app.router.add_get("/api/version", ollama_api.version)
    app.router.add_get("/api/tags", ollama_api.tags)
    app.router.add_get("/api/ps", ollama_api.ps)
    app.router.add_post("/api/show", ollama_api.show)
    app.router.add_post("/api/chat", ollama_api.chat)
    app.router.add_post("/api/generate", ollama_api.generate)
    status.add_routes(app, feed)
    if timeline is not None:
        timeline_api.add_routes(app, timeline, core)
    return app


async def serve(
    core: AgentCore, config: HttpConfig, version: str, feed: StatusFeed, *, timeline: Timeline | None = None
) -> None:
    """Serve until cancelled; a port that cannot be bound is logged and the node runs on without the API."""
    app = make_app(core, config, version, feed, timeline)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            log.error(
                "http: cannot listen on %s:%d (%s); the node runs on without the HTTP API",
                config.host,
                config.port,
                exc.strerror or exc,
            )
            return
        auth = "bearer token required" if config.token is not None else "no token"
        log.info("http: serving the OpenAI and Ollama APIs on http://%s:%d (%s)", config.host, config.port, auth)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
