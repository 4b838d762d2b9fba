"""What the tools need from the app: the ToolHost protocol and the LastValues store for `mqtt_read`."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class ToolHost(Protocol):
    """Implemented by the app: the outside world as the tools see it."""

    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> Awaitable[None] | None:
        """Publish an `mqtt_publish` tool's message (may be a coroutine); raise, saying why, when it was not sent or
        not acknowledged: the model and the audit are told the reason, never a success."""

    def audit(self, record: dict[str, Any]) -> None:
        """Publish one audit record durably (e.g. spooled to `<base>/tools/audit`)."""

    async def snapshot(self, camera: str) -> dict[str, Any]:
        """Take a frame: {"snapshot_id", "camera", "captured_at"}; raise when the camera cannot."""


@dataclass(frozen=True)
class SeenValue:
    """The last payload seen on a topic and when (monotonic clock)."""

    payload: bytes
    received: float


MAX_DEPTH = 32  # deeper JSON is given to the model as text (the prompt's formatter recurses)


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (iterative: a deep value cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def decode_value(payload: bytes, max_chars: int | None = None) -> Any:
    """Payload as text, JSON-parsed when it is JSON; with `max_chars`, a longer one is cut, marked, and left as text."""
    head = payload if max_chars is None else payload[: 4 * max_chars + 4]  # UTF-8: at most 4 bytes a character
    text = head.decode("utf-8", errors="replace")
    if max_chars is not None and (len(head) < len(payload) or len(text) > max_chars):
        return f"{text[:max_chars]}...[truncated: {len(payload)} bytes in all]"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return value if json_depth(value) <= MAX_DEPTH else text


class LastValues:
    """The last value seen on each `mqtt_read` topic; the app subscribes to `topics()` and calls `update`."""

    def __init__(self, topics: Iterable[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._topics = tuple(dict.fromkeys(topics))
        self._clock = clock
        self._values: dict[str, SeenValue] = {}

    def topics(self) -> list[str]:
        """The topics to subscribe to."""
        return list(self._topics)

    def update(self, topic: str, payload: bytes | str) -> bool:
        """Record a message; False (and ignored) when no tool reads `topic`."""
        if topic not in self._topics:
            return False
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        self._values[topic] = SeenValue(data, self._clock())
        return True

    def adopt(self, old: LastValues) -> None:
        """Keep the values the store this one replaces (a reload) saw on topics that are still read."""
        self._values.update({topic: seen for topic, seen in old._values.items() if topic in self._topics})

    def get(self, topic: str) -> SeenValue | None:
        """The last value seen on `topic`, if any."""
        return self._values.get(topic)

    def read(self, topic: str, max_chars: int | None = None) -> dict[str, Any]:
        """{"topic", "value", "age_s"} (the value bounded by `max_chars`), or {"error": "no value seen yet"}."""
        seen = self._values.get(topic)
        if seen is None:
            return {"error": "no value seen yet"}
        age = max(0.0, self._clock() - seen.received)
        return {"topic": topic, "value": decode_value(seen.payload, max_chars), "age_s": round(age, 3)}
