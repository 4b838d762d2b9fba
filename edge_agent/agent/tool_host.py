"""The tools' view of the node: MQTT publishes through the link, audit records spooled, snapshots from cameras;
and the node's side of them: `mqtt_read` topics fed to the toolbox, confirmations taken (strictly) and counted."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from paho.mqtt.client import MQTT_ERR_SUCCESS, error_string, topic_matches_sub
from pydantic import SecretStr

from edge_agent.agent.shared import AgentCore
from edge_agent.agent.watch import take_snapshot
from edge_agent.messages import Frame, Inbound
from edge_agent.sinks.ask import LogEvery
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.tools.limits import MAX_CALL_ID

AUDIT = "tools/audit"
CONFIRM = "tools/confirm"
CONFIRM_MAX_BYTES = 256  # {"id": "<64 characters>"} and some spaces; checked before any parsing
PUBLISH_ACK_S = 5.0  # how long an action's QoS 1/2 publish may wait for the broker's acknowledgement
log = logging.getLogger(__name__)


class LinkToolHost:
    """Implements edge_agent.tools.ToolHost on the daemon's MQTT link and cameras."""

    def __init__(
        self,
        link: MqttLink,
        frames: Callable[[str], Frame | None],
        jpeg_quality: int = 85,
        confirm_topic: str | None = None,
    ) -> None:
        self.link, self.frames, self.jpeg_quality = link, frames, jpeg_quality
        self.confirm_topic = confirm_topic or link.topic(CONFIRM)

    async def publish(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        """An action's publish goes out now or fails: a command must not fire minutes later from the spool.
        Never into the node's own topics or onto a confirmation topic (a tool must not confirm a held call).
        Success means paho sent it and, at QoS 1/2, the broker acknowledged it within PUBLISH_ACK_S; otherwise an
        OSError says why (the model and the audit read it as the call's error)."""
        confirmations = f"{self.link.config.base_topic}/+/{CONFIRM}"
        own = topic.startswith(f"{self.link.base}/") or topic == self.confirm_topic
        if own or topic_matches_sub(confirmations, topic):
            raise PermissionError(f"a tool may not publish to {topic}: the node's own topics and confirmations")
        if not self.link.connected.is_set():
            raise ConnectionError("the MQTT broker is not connected")
        info = self.link.client.publish(topic, payload.encode(), qos=qos, retain=retain)
        if info.rc != MQTT_ERR_SUCCESS:
            later = " (queued by the client: it may still go out when the broker is back)" if qos > 0 else ""
            raise ConnectionError(f"the MQTT client did not send it: {error_string(info.rc)}{later}")
        deadline = asyncio.get_running_loop().time() + PUBLISH_ACK_S
        while qos > 0 and not info.is_published():
            if asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError(
                    f"the broker did not acknowledge it within {PUBLISH_ACK_S:.0f} s (it may still be delivered)"
                )
            await asyncio.sleep(0.01)

    def audit(self, record: dict[str, Any]) -> None:
        """Every call, whatever its outcome, on `<base>/tools/audit` (spooled: the audit trail is not lost)."""
        self.link.publish_result(AUDIT, record)

    async def snapshot(self, camera: str) -> dict[str, Any]:
        """The camera's newest frame, published retained on `<base>/snapshot/<camera>`."""
        frame = self.frames(camera)
        if frame is None:
            raise RuntimeError(f"camera {camera}: no frame yet")
        snapshot = take_snapshot(frame, self.jpeg_quality)
        self.link.publish_spooled(f"snapshot/{camera}", snapshot.jpeg, retain=True)
        return {"snapshot_id": snapshot.id, "camera": camera, "captured_at": round(snapshot.captured_at, 3)}


def confirmed_id(message: Inbound, required: Mapping[str, SecretStr]) -> str:
    """The call id a confirmation names: exactly {"id": "<call id>"}, not retained, with the `required` MQTT 5 user
    properties; ValueError saying what is wrong (the size is checked before the JSON is parsed)."""
    if message.retain:
        raise ValueError("a retained message is never a confirmation")
    if len(message.payload) > CONFIRM_MAX_BYTES:
        raise ValueError(f"{len(message.payload)} bytes, at most {CONFIRM_MAX_BYTES}")
    for name, value in required.items():
        expected = value.get_secret_value().encode()
        given = [v.encode() for n, v in message.user_properties if n == name]
        if not any(hmac.compare_digest(v, expected) for v in given):
            raise ValueError(f"no MQTT 5 user property {name!r} with the configured value")
    try:
        body = json.loads(message.payload)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(body, dict) or list(body) != ["id"] or not isinstance(body["id"], str):
        raise ValueError('not exactly {"id": "<call id>"}')
    if not 0 < len(body["id"]) <= MAX_CALL_ID:
        raise ValueError(f"the id is empty or longer than {MAX_CALL_ID} characters")
    return str(body["id"])


class ToolSubscriptions:
    """Subscribes the toolbox's `mqtt_read` topics and the confirmation topic; call it again after a reload.
    A confirmation that is malformed, unauthorised or names no held call costs nothing but a counter
    (health.agent.confirm_rejected) and at most one log line a minute: no audit record, no spool write."""

    def __init__(self, link: MqttLink, agent: AgentCore) -> None:
        self.link, self.agent = link, agent
        self.confirm_topic: str | None = None
        self.read_topics: list[str] = []  # the `mqtt_read` topics subscribed, as of the last call
        self._running: set[asyncio.Task[Any]] = set()
        self._rejections = LogEvery(log)

    def __call__(self) -> None:
        topics = self.agent.toolbox.last_values.topics()
        for topic in topics:
            self.link.subscribe(topic, self.remember)
        settings = self.agent.config.agent
        keep = {*topics, settings.confirm_topic or self.link.topic(CONFIRM)}
        gone = [topic for topic in self.read_topics if topic not in keep]
        for topic in gone:
            self.link.unsubscribe(topic)
        if gone:
            log.info("tools: unsubscribed from %s (no tool reads it any more)", ", ".join(gone))
        self.read_topics = topics
        topic = settings.confirm_topic or self.link.topic(CONFIRM)
        if topic != self.confirm_topic:
            if self.confirm_topic is not None:
                self.link.unsubscribe(self.confirm_topic)
            self.link.subscribe(topic, self.confirm)
            self.confirm_topic = topic
        if settings.confirm_user_property and self.link.config.protocol != "5":
            log.warning("tools: agent.confirm_user_property needs mqtt.protocol 5; no confirmation can be accepted")

    def remember(self, message: Inbound) -> None:
        """A value on an `mqtt_read` topic."""
        if self.agent.toolbox.last_values.update(message.topic, message.payload):
            self.agent.read_values += 1

    def confirm(self, message: Inbound) -> None:
        """A message on the confirmation topic: run the held call it names, or count it."""
        try:
            call_id = confirmed_id(message, self.agent.config.agent.confirm_user_property)
        except ValueError as exc:
            self.reject(str(exc))
            return
        task = asyncio.get_running_loop().create_task(self._run(call_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, call_id: str) -> None:
        if await self.agent.toolbox.confirm(call_id) is None:
            self.reject(f"no call {call_id!r} awaits confirmation (unknown, expired or already confirmed)")

    def reject(self, why: str) -> None:
        """Count an ignored confirmation; say so in the log at most once a minute."""
        self.agent.confirm_rejected += 1
        self._rejections.warning(
            "tools: ignored a confirmation on %s: %s; %d ignored so far (health.agent.confirm_rejected)",
            self.confirm_topic,
            why,
            self.agent.confirm_rejected,
        )
