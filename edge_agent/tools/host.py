"""What the tools need from the app: the ToolHost protocol and the LastValues store for `mqtt_read`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class ToolHost(Protocol):
    """Implemented by the app: the outside world as the tools see it."""

    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        """Publish an `mqtt_publish` tool's message (raise when it cannot be sent)."""

    def audit(self, record: dict[str, Any]) -> None:
        """Publish one audit record durably (e.g. spooled to `<base>/tools/audit`)."""

    async def snapshot(self, camera: str) -> dict[str, Any]:
        """Take a frame: {"snapshot_id", "camera", "captured_at"}; raise when the camera cannot."""


@dataclass(frozen=True)
class SeenValue:
    """The last payload seen on a topic and when (monotonic clock)."""

    payload: bytes
    received: float


def decode_value(payload: bytes) -> Any:
    """Payload as text, JSON-parsed when it is JSON."""
    text = payload.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class LastValues:
    """The last value seen on each `mqtt_read` topic; the app subscribes to `topics()` and calls `update`."""

    def __init__(self, topics: Iterable[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._topics = tuple(dict.fromkeys(topics))
        self._clock = clock
        self._values: dict[str, SeenValue] = {}

    def topics(self) -> list[str]:
        """The topics to subscribe to."""
        return list(self._topics)

    def update(self, topic: str, payload: bytes | str) -> None:
        """Record a message (topics nobody reads are ignored)."""
        if topic not in self._topics:
            return
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        self._values[topic] = SeenValue(data, self._clock())

    def get(self, topic: str) -> SeenValue | None:
        """The last value seen on `topic`, if any."""
        return self._values.get(topic)

    def read(self, topic: str) -> dict[str, Any]:
        """{"topic", "value", "age_s"}, or {"error": "no value seen yet"}."""
        seen = self._values.get(topic)
        if seen is None:
            return {"error": "no value seen yet"}
        age = max(0.0, self._clock() - seen.received)
        return {"topic": topic, "value": decode_value(seen.payload), "age_s": round(age, 3)}
