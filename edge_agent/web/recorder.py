"""What the status page shows, taken from what the node publishes: the link records its latest `state` and
`health`, each task's last answer, and the recent events and tool audit records (in memory, bounded)."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edge_agent.messages import Frame
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.sinks.spool import Spooled

RECENT = 50  # events and audit records kept for the page


@dataclass
class Recorded:
    """The node's latest published values and recent results."""

    latest: dict[str, Any] = field(default_factory=dict)  # "state", "health" -> their JSON
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task name -> its last result
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    audit: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))

    def take(self, suffix: str, body: bytes) -> None:
        """Remember a published JSON result the page shows (anything else is ignored)."""
        parts = suffix.split("/")
        wanted = suffix in ("state", "health", "event", "tools/audit") or (parts[0] == "task" and len(parts) == 2)
        if not wanted:
            return
        try:
            value = json.loads(body)
        except ValueError:
            return
        if not isinstance(value, dict):
            return
        value.setdefault("ts", time.time())
        if suffix in ("state", "health"):
            self.latest[suffix] = value
        elif suffix == "event":
            self.events.appendleft(value)
        elif suffix == "tools/audit":
            self.audit.appendleft(value)
        else:
            self.tasks[parts[1]] = value


class RecordingLink(MqttLink):
    """The MQTT link, also remembering what it publishes for the status page."""

    recorded: Recorded

    def record(self) -> Recorded:
        """Start recording (the recorder is created lazily: MqttLink's constructor stays as it is)."""
        self.recorded = getattr(self, "recorded", None) or Recorded()
        return self.recorded

    def publish_spooled(
        self,
        suffix: str,
        body: bytes,
        *,
        retain: bool = False,
        message_id: str | None = None,
        created: float | None = None,
    ) -> Future[Spooled]:
        """Spool and send as the link does, and remember a result the page shows."""
        self.record().take(suffix, body)
        return super().publish_spooled(suffix, body, retain=retain, message_id=message_id, created=created)

    def publish_state(self, suffix: str, payload: bytes | str, retain: bool = True) -> None:
        """Publish a latest value as the link does, and remember `state` and `health`."""
        if suffix in ("state", "health"):
            self.record().take(suffix, payload.encode() if isinstance(payload, str) else payload)
        super().publish_state(suffix, payload, retain=retain)


@dataclass(frozen=True)
class StatusFeed:
    """What the status page reads: the recorded values, the node's `state` now, and camera frames."""

    recorded: Recorded
    state: Callable[[], Mapping[str, Any]]
    frames: Callable[[str], Frame | None]
    node_id: str
