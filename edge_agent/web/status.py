"""The status page: plain HTML, CSS and JS from the package (no build step, no CDN), polling a JSON snapshot of
the node (cameras with their newest frame, tasks with their last answer, health, degradation, model, queue,
decode speed, recent events and tool audit)."""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from typing import Any

from aiohttp import web

from edge_agent.app.node import preview_jpeg
from edge_agent.web.context import context
from edge_agent.web.recorder import StatusFeed

FEED = web.AppKey("status_feed", StatusFeed)
SHOWN = 20  # events and audit records in the snapshot
STATIC = {"status.html": "text/html", "status.css": "text/css", "status.js": "text/javascript"}


def _static(name: str) -> bytes:
    return (resources.files("edge_agent") / "data" / name).read_bytes()


async def page(request: web.Request) -> web.Response:
    """GET /status and its CSS and JS."""
    name = request.match_info.get("name", "status.html")
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=_static(name), content_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def _cameras(feed: StatusFeed, state: dict[str, Any]) -> list[dict[str, Any]]:
    errors = state.get("camera_errors") or {}
    cameras = []
    for name, camera_state in (state.get("cameras") or {}).items():
        frame = feed.frames(name)
        age = None if frame is None else round(max(0.0, time.time() - frame.captured_at), 1)
        cameras.append({"name": name, "state": camera_state, "error": errors.get(name), "frame_age_s": age})
    return cameras


def snapshot(request: web.Request) -> dict[str, Any]:
    """Everything the page shows, as JSON."""
    feed = request.app[FEED]
    core = context(request).gate.core
    state = dict(feed.state())
    recorded = feed.recorded
    problems = state.get("tasks") or {}
    tasks = [
        {"name": t.name, "kind": t.kind, "last": recorded.tasks.get(t.name), "problem": problems.get(t.name)}
        for t in core.config.tasks
    ]
    return {
        "node": feed.node_id,
        "version": state.get("version"),
        "started": state.get("started"),
        "model": state.get("model"),
        "api_model": context(request).gate.model_name,
        "queue": {**(state.get("queue") or {}), "depth": core.scheduler.depth},
        "degradation": state.get("degradation"),
        "decode_tokens_per_s": round(core.decode_tokens_per_s, 2),
        "health": recorded.latest.get("health"),
        "cameras": _cameras(feed, state),
        "microphone": state.get("microphone"),
        "tasks": tasks,
        "events": list(recorded.events)[:SHOWN],
        "audit": list(recorded.audit)[:SHOWN],
        "now": time.time(),
    }


async def data(request: web.Request) -> web.Response:
    """GET /status/data.json."""
    return web.json_response(snapshot(request), headers={"Cache-Control": "no-store"})


async def frame(request: web.Request) -> web.Response:
    """GET /status/frame/{camera}.jpg: the camera's newest frame, scaled down."""
    latest = request.app[FEED].frames(request.match_info["camera"])
    if latest is None:
        raise web.HTTPNotFound()
    jpeg = await asyncio.to_thread(preview_jpeg, latest.image)
    if jpeg is None:
        raise web.HTTPNotFound()
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, feed: StatusFeed) -> None:
    """The page's routes on the API's application."""
    app[FEED] = feed
    app.router.add_get("/status", page)
    app.router.add_get("/status/data.json", data)
    app.router.add_get("/status/frame/{camera}.jpg", frame)
    app.router.add_get("/status/{name}", page)
