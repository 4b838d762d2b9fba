"""Supervised long-running asyncio services: restart with backoff, stop in reverse order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ServiceFn = Callable[[], Awaitable[None]]


@dataclass
class Backoff:
    """Exponential backoff that resets after a service has run well for a while."""

    initial_s: float = 1.0
    maximum_s: float = 60.0
    healthy_after_s: float = 60.0
    _next: float = field(default=0.0, init=False)

    def delay(self, ran_for_s: float) -> float:
        """Seconds to wait before the next start, given how long the last run lasted."""
        if ran_for_s >= self.healthy_after_s or self._next == 0.0:
            self._next = self.initial_s
        else:
            self._next = min(self._next * 2, self.maximum_s)
        return self._next


class Supervisor:
    """Runs named services as tasks; a service that fails is logged and restarted with backoff."""

    def __init__(self, backoff: Callable[[], Backoff] = Backoff) -> None:
        self._backoff = backoff
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, name: str, service: ServiceFn) -> None:
        """Start a service under supervision."""
        if name in self._tasks:
            raise ValueError(f"service {name!r} is already running")
        self.restarts[name] = 0
        self._tasks[name] = asyncio.create_task(self._keep_running(name, service), name=name)

    async def _keep_running(self, name: str, service: ServiceFn) -> None:
        backoff = self._backoff()
        while True:
            started = time.monotonic()
            try:
                await service()
                log.info("service %s finished", name)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                ran_for = time.monotonic() - started
                delay = backoff.delay(ran_for)
                self.restarts[name] += 1
                log.exception("service %s failed after %.1f s; restarting in %.1f s", name, ran_for, delay)
                await asyncio.sleep(delay)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel services in reverse start order, waiting at most `timeout_s` for each."""
        for name in reversed(list(self._tasks)):
            task = self._tasks.pop(name)
            task.cancel()
            try:
                await asyncio.wait_for(task, timeout_s)
            except (asyncio.CancelledError, asyncio.TimeoutError):
                pass
            except Exception:
                log.exception("service %s failed while stopping", name)
