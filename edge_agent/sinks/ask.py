"""Questions over MQTT: validate, queue (bounded), answer each exactly once, never crash on bad input."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from paho.mqtt.client import topic_matches_sub
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_agent.messages import AskReply, AskRequest, Inbound
from edge_agent.sinks.partial import PartialSender

log = logging.getLogger(__name__)

AskHandler = Callable[[AskRequest], Awaitable[AskReply]]
ReferenceName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]+$", min_length=1, max_length=64)]
MAX_REFERENCES = 8


class AskPayload(BaseModel):
    """The JSON body of a question published to `<base>/ask`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str | None = Field(default=None, min_length=1, max_length=128, description="Echoed in the reply.")
    question: str = Field(min_length=1, max_length=4000, description="What to ask the model.")
    camera: str | None = Field(
        default=None, pattern=r"^[a-zA-Z0-9_-]+$", max_length=64, description="Camera whose newest frame to show."
    )
    image: str | None = Field(default=None, min_length=1, description="A JPEG or PNG image, base64.")
    audio: str | None = Field(default=None, min_length=1, description="A WAV or FLAC recording, base64.")
    stream: bool = Field(default=False, description="Send the answer's text as it is written, then the reply.")
    references: list[ReferenceName] = Field(
        default_factory=list,
        max_length=MAX_REFERENCES,
        description="Names of configured reference images to show the model first (e.g. ['rex']).",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty or only whitespace")
        return value


async def no_model(_request: AskRequest) -> AskReply:
    """The handler until a model runtime is wired in."""
    return AskReply("error", error="no model loaded")


class Publisher(Protocol):
    """What the ask service needs from the MQTT link."""

    def publish_now(self, topic: str, payload: bytes, *, correlation_data: bytes | None = None) -> None:
        """Publish at QoS 1, not retained, without spooling."""

    def publish_event(self, data: dict[str, Any]) -> None:
        """Spool a Home Assistant event (never retained)."""


@dataclass(frozen=True)
class Destination:
    """Where a reply goes: an MQTT topic (with correlation data), or the Home Assistant event entity."""

    topic: str | None
    correlation_data: bytes | None = None


def request_problem(exc: ValidationError) -> str:
    """One line saying what is wrong with a JSON request (at most three fields)."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"])
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "invalid request: " + "; ".join(parts)


def echo_id(payload: bytes) -> str | None:
    """The request's `id`, if one can be read at all (so even a rejected request can be matched)."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    value = body.get("id") if isinstance(body, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def _base64(field: str, value: str | None) -> bytes | None:
    """The bytes of a base64 field (a `data:...;base64,` prefix allowed); ValueError naming the field."""
    if value is None:
        return None
    if value.startswith("data:") and "," in value[:100]:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"invalid request: {field}: not valid base64") from None


def _valid_topic(topic: str) -> bool:
    return bool(topic) and not any(ch in topic for ch in "+#\0") and len(topic.encode()) < 65535


def _shown(topic: str) -> str:
    return repr(topic if len(topic) <= 120 else topic[:120] + "...")


@dataclass(frozen=True)
class ReplyTopics:
    """Where an MQTT 5 `response_topic` may send a reply: under an allowed prefix, and never a reserved prefix (the
    node's tree, Home Assistant discovery) nor a protected topic filter (tools' topics, the node's subscriptions)."""

    allowed: tuple[str, ...] = ("replies/",)
    reserved: tuple[tuple[str, str], ...] = ()  # (prefix, what it is)
    protected: Callable[[], Iterable[str]] = field(default=tuple)  # MQTT topic filters, asked for at each request

    def refusal(self, topic: str) -> str | None:
        """Why the node will not publish a reply to `topic`, or None when it may."""
        if not _valid_topic(topic):
            return "invalid response_topic: empty, too long, or with '+', '#' or NUL"
        refused = f"response_topic {_shown(topic)} refused"
        for prefix, what in self.reserved:
            if topic.startswith(prefix) or topic == prefix.rstrip("/"):
                return f"{refused}: the node never replies into {what} ({prefix})"
        for protected in self.protected():
            if topic_matches_sub(protected, topic):
                return f"{refused}: it is a topic of a tool or of the node ({protected})"
        if topic.startswith("$") or not any(topic.startswith(prefix) for prefix in self.allowed):
            allowed = ", ".join(repr(prefix) for prefix in self.allowed) or "none"
            return f"{refused}: it must start with one of mqtt.reply_topic_prefixes ({allowed})"
        return None


class LogEvery:
    """One log line at most every `interval_s` for a repeated event; the events in between are counted in it."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self.logger, self.interval_s = logger, interval_s
        self._last = -interval_s
        self._quiet = 0

    def warning(self, message: str, *args: Any) -> None:
        """Log now, or count it when a line was logged less than `interval_s` ago."""
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._quiet += 1
            return
        more = f" (and {self._quiet} more like it in the last {now - self._last:.0f} s)" if self._quiet else ""
        self.logger.warning(message + more, *args)
        self._last, self._quiet = now, 0


class AskService:
    """Turns `ask` messages into requests on a bounded queue and publishes exactly one reply for each."""

    def __init__(
        self,
        publisher: Publisher,
        answer_topic: str,
        handler: AskHandler = no_model,
        *,
        queue_size: int = 4,
        max_bytes: int = 16384,
        timeout_s: float = 120.0,
        reply_topics: ReplyTopics | None = None,
    ) -> None:
        self.publisher, self.answer_topic, self.handler = publisher, answer_topic, handler
        self.max_bytes, self.timeout_s = max_bytes, timeout_s
        self.reply_topics = reply_topics or ReplyTopics()
        self.queue: asyncio.Queue[tuple[AskRequest, Destination]] = asyncio.Queue(queue_size)
        self.replies = 0
        self.refused_topics = 0
        self._refusals = LogEvery(log)

    def on_ask(self, message: Inbound) -> None:
        """A JSON question on `<base>/ask` (runs on the loop)."""
        received = time.time()
        destination = Destination(self.answer_topic, message.correlation_data)
        if message.response_topic is not None:
            refusal = self.reply_topics.refusal(message.response_topic)
            if refusal is not None:  # said on `answer`, never on the topic asked for
                self.refused_topics += 1
                self._refusals.warning("ask: %s; the refusal went to %s", refusal, self.answer_topic)
                small = len(message.payload) <= self.max_bytes
                request = AskRequest(None, "mqtt", id=echo_id(message.payload) if small else None, received=received)
                self._reply(request, destination, refusal)
                return
            destination = Destination(message.response_topic, message.correlation_data)
        if len(message.payload) > self.max_bytes:
            error = f"request too large: {len(message.payload)} bytes, at most {self.max_bytes}"
            self._reply(AskRequest(None, "mqtt", received=received), destination, error)
            return
        try:
            body = AskPayload.model_validate_json(message.payload)
        except ValidationError as exc:
            request = AskRequest(None, "mqtt", id=echo_id(message.payload), received=received)
            self._reply(request, destination, request_problem(exc))
            return
        try:
            image, audio = _base64("image", body.image), _base64("audio", body.audio)
        except ValueError as exc:
            self._reply(AskRequest(None, "mqtt", id=body.id, received=received), destination, str(exc))
            return
        publish = functools.partial(self._publish, destination)
        partial = PartialSender(publish, body.id) if body.stream else None
        request = AskRequest(
            body.question,
            "mqtt",
            body.id,
            body.camera,
            received,
            image=image,
            audio=audio,
            partial=partial,
            references=tuple(body.references),
        )
        self.submit(request, destination)

    def on_text(self, message: Inbound) -> None:
        """Plain text from Home Assistant's `text` entity; the answer goes to the event entity."""
        question = message.payload[: self.max_bytes].decode("utf-8", "replace").strip()
        if question and not message.retain:
            self.submit(AskRequest(question, "text", received=time.time()), Destination(None))

    def on_button(self, message: Inbound) -> None:
        """Home Assistant's `button`: analyse now."""
        if not message.retain:
            self.submit(AskRequest(None, "button", received=time.time()), Destination(None))

    def submit(self, request: AskRequest, destination: Destination) -> None:
        """Queue a request, or answer `busy` at once when the queue is full."""
        try:
            self.queue.put_nowait((request, destination))
        except asyncio.QueueFull:
            self._send(request, destination, AskReply("busy", error="busy: too many questions waiting"))

    async def serve(self) -> None:
        """Answer queued requests one at a time, forever."""
        while True:
            request, destination = await self.queue.get()
            try:
                reply = await asyncio.wait_for(self.handler(request), self.timeout_s)
            except asyncio.TimeoutError:
                reply = AskReply("error", error=f"no answer within {self.timeout_s:g} s")
            except Exception as exc:
                log.exception("ask: the handler failed")
                reply = AskReply("error", error=f"internal error: {type(exc).__name__}")
            self._send(request, destination, reply)

    def _reply(self, request: AskRequest, destination: Destination, error: str) -> None:
        log.debug("ask: rejected: %s", error)
        self._send(request, destination, AskReply("error", error=error))

    def _send(self, request: AskRequest, destination: Destination, reply: AskReply) -> None:
        body = {
            "id": request.id,
            "status": reply.status,
            "answer": reply.answer,
            "error": reply.error,
            "model": reply.model,
            "received": round(request.received, 3),
            "elapsed_ms": round((time.time() - request.received) * 1000, 1),
        }
        body.update({key: value for key, value in reply.meta.items() if key not in body})  # context after the answer
        self.replies += 1
        if isinstance(request.partial, PartialSender):
            request.partial.closed = True  # a generation cut by the timeout may still be writing
        self._publish(destination, body, request.question)

    def _publish(self, destination: Destination, body: dict[str, Any], question: str | None = None) -> None:
        try:
            if destination.topic is None:  # the event carries its own unique `id`, like every spooled result
                body.pop("id")
                shown = question if question is not None else "(analyse now)"
                self.publisher.publish_event({"event_type": "answer", "question": shown[:255], **body})
            else:
                data = json.dumps(body).encode()
                self.publisher.publish_now(destination.topic, data, correlation_data=destination.correlation_data)
        except Exception:  # a reply that cannot be sent must not take the service down
            log.exception("ask: could not publish the reply")
