"""A streamed answer's partial messages over MQTT, numbered and published from the event loop."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any


class PartialSender:
    """A streamed answer's partial messages, numbered from 0 and published from the loop (the model calls this from
    its own thread, before it returns the answer); none after the final reply."""

    def __init__(self, publish: Callable[[dict[str, Any]], None], request_id: str | None) -> None:
        self.publish, self.request_id = publish, request_id
        self.closed = False
        self._loop, self._numbers = asyncio.get_running_loop(), itertools.count()

    def __call__(self, text: str, reset: bool) -> None:
        """Send `text` (added to what was sent, or replacing it when `reset`)."""
        body: dict[str, Any] = {"id": self.request_id, "status": "partial", "text": text, "seq": next(self._numbers)}
        if reset:
            body["reset"] = True
        self._loop.call_soon_threadsafe(self._send, body)

    def _send(self, body: dict[str, Any]) -> None:
        if not self.closed:
            self.publish(body)
