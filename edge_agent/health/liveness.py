"""Liveness checks for the systemd watchdog (`ProgressWatchdog.watch`) that no `busy()` block can express."""

from __future__ import annotations

import time
from collections.abc import Callable


class DrainCheck:
    """A queue that must drain while its consumer is up: publishing is stuck when the broker is connected, results
    wait in the spool and none has left it for `limit_s`. Not connected is a known outage (the client reconnects on
    its own, results are spooled) and an empty spool is idle: neither is stuck."""

    def __init__(
        self,
        connected: Callable[[], bool],
        depth: Callable[[], int],
        limit_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connected, self._depth, self.limit_s, self._clock = connected, depth, limit_s, clock
        self._last_depth = 0
        self._since = clock()  # the last time publishing was idle, in an outage, or made progress

    def __call__(self) -> str | None:
        """Why publishing is stuck, or None."""
        now, depth = self._clock(), self._depth()
        if not self._connected() or depth == 0 or depth < self._last_depth:
            self._since = now
        self._last_depth = depth
        waited = now - self._since
        if waited <= self.limit_s:
            return None
        return f"{depth} result(s) waiting and none delivered for {waited:.0f} s while connected"
