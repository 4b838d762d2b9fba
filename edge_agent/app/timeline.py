"""The timeline in the running node: opened from the config, fed what the link spools and every answered `ask`, and
queried on `<base>/timeline/query` (replies on `timeline/reply` or an allowed MQTT 5 response topic, as for `ask`)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from pydantic import ValidationError

from edge_agent.agent.shared import AgentCore
from edge_agent.agent.timeline_answer import TimelineAnswers, run_query
from edge_agent.config import Config
from edge_agent.messages import AskReply, AskRequest, Inbound
from edge_agent.sinks.ask import AskHandler, LogEvery, ReplyTopics, echo_id, request_problem
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.timeline import Entry, Timeline, TimelineQuery, timeline_dir

log = logging.getLogger("edge_agent.timeline")
MAX_IN_FLIGHT = 4  # timeline queries being answered at once; beyond, `busy`


def open_timeline(config: Config, link: MqttLink) -> Timeline | None:
    """The timeline (when timeline.enabled), fed every result the link spools."""
    if not config.timeline.enabled:
        return None
    timeline = Timeline(timeline_dir(config), config.timeline)
    link.on_spooled.append(timeline.published)
    return timeline


def recording_asks(handler: AskHandler, timeline: Timeline) -> AskHandler:
    """The ask handler, each answered question also going into the timeline (kind `ask`)."""

    async def ask(request: AskRequest) -> AskReply:
        reply = await handler(request)
        if request.question is not None and reply.status == "ok":
            text = f"Q: {request.question[:300]} A: {reply.answer or ''}"
            payload = {"question": request.question, "answer": reply.answer, "origin": request.origin}
            payload["model"] = reply.model
            timeline.add(Entry(time.time(), "ask", text, "ask", request.camera, payload))
        return reply

    return ask


class TimelineQueries:
    """`timeline/query` messages answered, each exactly once; bad input gets an error reply, never a crash."""

    def __init__(self, link: MqttLink, timeline: Timeline, core: AgentCore | None, replies: ReplyTopics) -> None:
        self.link, self.timeline, self.replies = link, timeline, replies
        self.answers = TimelineAnswers(core) if core is not None else None
        self.reply_topic = link.topic("timeline/reply")
        self.config = timeline.config
        self.timeout_s = link.config.ask_timeout_s
        self.running: set[asyncio.Task[None]] = set()
        self._refusals = LogEvery(log)

    def subscribe(self) -> None:
        """Handle `<base>/timeline/query`."""
        self.link.subscribe(self.link.topic("timeline/query"), self.on_query)

    def on_query(self, message: Inbound) -> None:
        """A JSON query (runs on the loop; the work is a task of its own)."""
        received, topic = time.time(), self.reply_topic
        small = len(message.payload) <= self.config.query_max_bytes
        if message.response_topic is not None:
            refusal = self.replies.refusal(message.response_topic)
            if refusal is not None:  # said on timeline/reply, never on the topic asked for
                self._refusals.warning("timeline: %s; the refusal went to %s", refusal, topic)
                echo = echo_id(message.payload) if small else None
                self._send(topic, message, {"id": echo, "status": "error", "error": refusal}, received)
                return
            topic = message.response_topic
        if not small:
            error = f"request too large: {len(message.payload)} bytes, at most {self.config.query_max_bytes}"
            self._send(topic, message, {"id": None, "status": "error", "error": error}, received)
            return
        try:
            query = TimelineQuery.model_validate_json(message.payload)
        except ValidationError as exc:
            body = {"id": echo_id(message.payload), "status": "error", "error": request_problem(exc)}
            self._send(topic, message, body, received)
            return
        if len(self.running) >= MAX_IN_FLIGHT:
            body = {"id": query.id, "status": "busy", "error": "busy: too many timeline queries running"}
            self._send(topic, message, body, received)
            return
        task = asyncio.get_running_loop().create_task(self._answer(query, topic, message, received))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _answer(self, query: TimelineQuery, topic: str, message: Inbound, received: float) -> None:
        try:
            body = await asyncio.wait_for(run_query(self.timeline, self.answers, query), self.timeout_s)
        except asyncio.TimeoutError:
            body = {"status": "error", "error": f"no answer within {self.timeout_s:g} s"}
        except Exception as exc:
            log.exception("timeline: a query failed")
            body = {"status": "error", "error": f"internal error: {type(exc).__name__}"}
        self._send(topic, message, {"id": query.id, **body}, received)

    def _send(self, topic: str, message: Inbound, body: dict[str, Any], received: float) -> None:
        body["elapsed_ms"] = round((time.time() - received) * 1000, 1)
        try:
            data = json.dumps(body, default=str).encode()
            self.link.publish_now(topic, data, correlation_data=message.correlation_data)
        except Exception:  # a reply that cannot be sent must not take the node down
            log.exception("timeline: could not publish the reply")

    async def stop(self) -> None:
        """Cancel the queries still running."""
        for task in list(self.running):
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
