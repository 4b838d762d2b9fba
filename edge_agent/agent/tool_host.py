"""The tools' view of the node: MQTT publishes through the link, audit records spooled, snapshots from cameras."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from edge_agent.agent.watch import take_snapshot
from edge_agent.messages import Frame, Inbound
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.tools import Toolbox

AUDIT = "tools/audit"
CONFIRM = "tools/confirm"


class LinkToolHost:
    """Implements edge_agent.tools.ToolHost on the daemon's MQTT link and cameras."""

    def __init__(self, link: MqttLink, frames: Callable[[str], Frame | None], jpeg_quality: int = 85) -> None:
        self.link, self.frames, self.jpeg_quality = link, frames, jpeg_quality

    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        """An action's publish goes out now or fails: a command must not fire minutes later from the spool."""
        if not self.link.connected.is_set():
            raise ConnectionError("the MQTT broker is not connected")
        self.link.client.publish(topic, payload.encode(), qos=qos, retain=retain)

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


def serve_tools(link: MqttLink, toolbox: Callable[[], Toolbox]) -> None:
    """Feed `mqtt_read` topics into the toolbox's last values, and accept confirmations on `tools/confirm`."""

    def remember(message: Inbound) -> None:
        toolbox().last_values.update(message.topic, message.payload)

    for topic in toolbox().last_values.topics():
        link.subscribe(topic, remember)

    running: set[asyncio.Task[Any]] = set()

    def confirm(message: Inbound) -> None:
        try:
            call_id = json.loads(message.payload)["id"]
        except (ValueError, KeyError, TypeError):
            call_id = None
        if not isinstance(call_id, str):
            link.publish_result(AUDIT, {"status": "error", "error": "a confirmation is a JSON object with an 'id'"})
            return
        task = asyncio.get_running_loop().create_task(toolbox().confirm(call_id))
        running.add(task)
        task.add_done_callback(running.discard)

    link.subscribe(link.topic(CONFIRM), confirm)
