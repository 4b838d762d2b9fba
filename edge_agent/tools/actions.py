"""What each declared action does; tools are only these, never a shell or a file."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent.config import MqttPublishAction, MqttReadAction, SnapshotAction, TimeAction, ToolConfig
from edge_agent.tools.host import LastValues, ToolHost
from edge_agent.tools.templates import Template, parse_template

log = logging.getLogger("edge_agent.tools")


class ActionFailedError(Exception):
    """The action ran but could not do its job; the message is told to the model."""


def _defaults(parameters: Mapping[str, Any]) -> dict[str, Any]:
    properties = parameters.get("properties") or {}
    return {name: prop["default"] for name, prop in properties.items() if isinstance(prop, dict) and "default" in prop}


@dataclass(frozen=True)
class PublishRunner:
    """`mqtt_publish`: fill the topic and payload templates and publish through the host."""

    topic: Template
    payload: Template
    qos: int
    retain: bool
    defaults: dict[str, Any]

    def render(self, arguments: Mapping[str, Any]) -> tuple[str, str]:
        """(topic, payload) for the arguments; TemplateError when they do not fit."""
        topic = self.topic.render(arguments, topic=True, defaults=self.defaults)
        return topic, self.payload.render(arguments, defaults=self.defaults)

    async def run(self, host: ToolHost, _values: LastValues, arguments: Mapping[str, Any]) -> Any:
        """Publish; the model is told where."""
        topic, payload = self.render(arguments)
        try:
            sent = host.publish(topic, payload, self.qos, self.retain)
            if inspect.isawaitable(sent):
                await sent  # e.g. until the broker acknowledged it
        except OSError as exc:  # not connected, not sent, not acknowledged in time, a forbidden topic
            log.warning("tools: nothing published to %s: %s", topic, exc)
            raise ActionFailedError(f"not published to {topic}: {exc}") from None
        return {"published": True, "topic": topic}


@dataclass(frozen=True)
class ReadRunner:
    """`mqtt_read`: the last value seen on the topic, at most `max_chars` characters of it."""

    topic: str
    max_chars: int = 1000

    async def run(self, _host: ToolHost, values: LastValues, _arguments: Mapping[str, Any]) -> Any:
        """{"topic", "value", "age_s"}; ActionFailedError when nothing was seen yet."""
        result = values.read(self.topic, self.max_chars)
        if "error" in result:
            raise ActionFailedError(str(result["error"]))
        return result


@dataclass(frozen=True)
class SnapshotRunner:
    """`snapshot`: a fresh frame from the camera, through the host."""

    camera: str

    async def run(self, host: ToolHost, _values: LastValues, _arguments: Mapping[str, Any]) -> Any:
        """What the host reports about the frame."""
        return await host.snapshot(self.camera)


@dataclass(frozen=True)
class TimeRunner:
    """`time`: the node's local date and time."""

    now: Callable[[], datetime]

    async def run(self, _host: ToolHost, _values: LastValues, _arguments: Mapping[str, Any]) -> Any:
        """Local ISO 8601 date-time, weekday and time zone."""
        now = self.now()
        local = now if now.tzinfo is not None else now.astimezone()
        offset = local.strftime("%z")
        return {
            "datetime": local.isoformat(timespec="seconds"),
            "weekday": local.strftime("%A"),
            "timezone": local.tzname() or offset,
            "utc_offset": f"{offset[:3]}:{offset[3:]}" if offset else "",
        }


Runner = PublishRunner | ReadRunner | SnapshotRunner | TimeRunner


def make_runner(tool: ToolConfig, now: Callable[[], datetime]) -> Runner:
    """The runner of a tool's action; ValueError naming the tool when its templates do not fit its parameters."""
    action = tool.action
    if isinstance(action, MqttPublishAction):
        names = set((tool.parameters.get("properties") or {}).keys())
        where = f"tool '{tool.name}'"
        return PublishRunner(
            topic=parse_template(action.topic, names, where=f"{where}: topic"),
            payload=parse_template(action.payload, names, where=f"{where}: payload"),
            qos=action.qos,
            retain=action.retain,
            defaults=_defaults(tool.parameters),
        )
    if isinstance(action, MqttReadAction):
        return ReadRunner(action.topic, action.max_chars)
    if isinstance(action, SnapshotAction):
        return SnapshotRunner(action.camera)
    if isinstance(action, TimeAction):
        return TimeRunner(now)
    raise ValueError(f"tool '{tool.name}': unknown action {action!r}")  # pragma: no cover
