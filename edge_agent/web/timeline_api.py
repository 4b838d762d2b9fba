"""`GET /api/timeline`: the timeline's entries by time, kind, task, camera and text, and a question answered from
them (`question=`, `images=true`), behind the same token as every other endpoint."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from edge_agent.agent.shared import AgentCore
from edge_agent.agent.timeline_answer import TimelineAnswers, run_query
from edge_agent.timeline import Timeline, TimelineQuery
from edge_agent.web.errors import ApiError, invalid_body

TIMELINE: web.AppKey[Timeline] = web.AppKey("timeline", Timeline)
ANSWERS: web.AppKey[TimelineAnswers] = web.AppKey("timeline_answers", TimelineAnswers)
SINGLE = ("id", "since", "until", "task", "camera", "grep", "limit", "question", "images")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def query_of(params: Any) -> TimelineQuery:
    """The query in the URL's parameters (`kind` may repeat or be comma-separated); ApiError when it is wrong."""
    unknown = sorted(set(params) - {*SINGLE, "kind"})
    if unknown:
        raise ApiError("bad_request", f"{unknown[0]}: unknown parameter", param=unknown[0])
    fields: dict[str, Any] = {name: params[name] for name in SINGLE if name in params}
    if "kind" in params:
        fields["kind"] = ",".join(params.getall("kind"))
    if "limit" in fields:
        try:
            fields["limit"] = int(fields["limit"])
        except ValueError:
            raise ApiError("bad_request", "limit: not a whole number", param="limit") from None
    if "images" in fields:
        if fields["images"].lower() not in (*TRUE, *FALSE):
            raise ApiError("bad_request", "images: true or false", param="images")
        fields["images"] = fields["images"].lower() in TRUE
    try:
        return TimelineQuery.model_validate(fields)
    except ValidationError as exc:
        raise invalid_body(exc) from None


async def timeline(request: web.Request) -> web.Response:
    """GET /api/timeline?since=24h&kind=answer&task=door&camera=yard&grep=open&limit=50[&question=...]."""
    query = query_of(request.query)
    body = await run_query(request.app[TIMELINE], request.app[ANSWERS], query)
    if body["status"] == "busy":
        raise ApiError("busy", body["error"], retry_after_s=5)
    if body["status"] != "ok":  # the timeline cannot be read, or no model answers the question
        raise ApiError("unavailable", body["error"])
    return web.json_response(body)


def add_routes(app: web.Application, store: Timeline, core: AgentCore) -> None:
    """The timeline's route on the API's application."""
    app[TIMELINE] = store
    app[ANSWERS] = TimelineAnswers(core)
    app.router.add_get("/api/timeline", timeline)
