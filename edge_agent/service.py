"""Supervised long-running asyncio services: restart with backoff, stop in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ServiceFn = Callable[[], Awaitable[None]]
_PR_SET_NAME = 15  # prctl(2): the calling thread's name, as /proc/<pid>/task/<tid>/comm, ps and top show it


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` in the kernel too (first 15 bytes; Linux only, else nothing happens), so
    `top -H` and /proc show which thread is which."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


async def run_in_thread(
    name: str, work: Callable[[], None], interrupt: Callable[[], None] = lambda: None, grace_s: float = 0.8
) -> None:
    """Run blocking `work` on a dedicated daemon thread named `name` and wait for it without holding any executor
    thread; its exception is raised here. Cancelled (the node stops): `interrupt()` is called to unblock it, and
    after `grace_s` a thread still blocked is left behind (a daemon thread does not keep the process alive)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def target() -> None:
        name_os_thread(name)
        error: BaseException | None = None
        try:
            work()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits any more
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        interrupt()
        await asyncio.wait({done}, timeout=grace_s)
        if done.done():
            done.exception()  # retrieved: the stop is what matters now
        else:
            log.warning("%s: still blocked after the stop; leaving it behind", name)
        raise


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
