"""systemd integration: sd_notify over $NOTIFY_SOCKET, and a watchdog that pings only while work progresses.

`ProgressWatchdog` is thread-safe: capture threads, the inference worker thread and the asyncio loop all
call `progress()` / `busy()`, and `watch()` adds checks it asks at each tick (the daemon's: publishing). Its
pinger runs either as an asyncio task (`run_async`, what the daemon uses: a blocked event loop then stops the
pings as well; the inference and capture threads are covered by `busy`) or as a thread (`run(stop)`, for code
without an event loop).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_STALL_LIMIT_S = 300.0
STATUS_PERIOD_S = 1.0  # how often STATUS= is refreshed when systemd asked for no watchdog


def notify_address(env: Mapping[str, str] | None = None) -> str | None:
    """$NOTIFY_SOCKET as a socket address ('@name' -> abstract '\\0name'); None when unset or unsupported."""
    raw = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    log.warning("systemd: NOTIFY_SOCKET=%r is not a unix socket path; not notifying", raw)
    return None


def watchdog_interval_s(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """systemd's watchdog timeout from WATCHDOG_USEC when it is meant for this process (WATCHDOG_PID), else None."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
        owner = int(env.get("WATCHDOG_PID", "0") or "0")
    except ValueError:
        return None
    if usec <= 0 or (owner and owner != (os.getpid() if pid is None else pid)):
        return None
    return usec / 1_000_000


class SystemdNotifier:
    """Sends sd_notify messages; without $NOTIFY_SOCKET every call is a no-op that returns False."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.address = notify_address(env)
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False  # a send failure is logged once, not on every ping

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; True when it was sent."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._socket.settimeout(1.0)
                self._socket.sendto(message, self.address)
            except OSError as exc:
                if not self._failed:
                    log.warning("systemd: cannot notify %r: %s", self.address.replace("\0", "@"), exc)
                self._failed = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (with a status text): start-up is complete."""
        return self.notify("READY=1", *([_status_line(status)] if status else []))

    def status(self, text: str) -> bool:
        """STATUS=<text>, shown by `systemctl status`."""
        return self.notify(_status_line(text))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: a clean shutdown has begun."""
        return self.notify("STOPPING=1", *([_status_line(status)] if status else []))

    def watchdog(self) -> bool:
        """WATCHDOG=1: the service is alive."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: ask for more start-up (or stop) time, e.g. while a large model loads."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        """Close the socket (a later call opens it again)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.splitlines())


@dataclass
class _StageCounts:
    completed: int = 0
    last_done: float | None = None


class ProgressWatchdog:
    """Pings systemd's watchdog every interval/2 unless some stage has been busy for longer than its stall limit.

    Being idle (no motion, no questions) never stops the pings; only work that started and does not finish does.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        interval_s: float | None = None,
        stall_limit_s: float = DEFAULT_STALL_LIMIT_S,
        stage_limits_s: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.interval_s = watchdog_interval_s() if interval_s is None else interval_s
        self.stall_limit_s = stall_limit_s
        self.stage_limits_s = dict(stage_limits_s or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._busy: dict[int, tuple[str, float, bool]] = {}  # token -> (stage, started, quiet)
        self._tokens = itertools.count()
        self._stages: dict[str, _StageCounts] = {}
        self._checks: dict[str, Callable[[], str | None]] = {}
        self._base_status = "running"
        self._sent_status: str | None = None
        self._was_stalled = False

    def progress(self, stage: str) -> None:
        """A unit of work of `stage` completed."""
        with self._lock:
            counts = self._stages.setdefault(stage, _StageCounts())
            counts.completed += 1
            counts.last_done = self._clock()

    @contextmanager
    def busy(self, stage: str, quiet: bool = False) -> Iterator[None]:
        """Mark `stage` as working for the duration of the block; completing it counts as progress. A `quiet` stage
        (a capture read, many a second) is not listed as busy in STATUS=, only when it stalls."""
        token = next(self._tokens)
        with self._lock:
            self._busy[token] = (stage, self._clock(), quiet)
        try:
            yield
        finally:
            with self._lock:
                del self._busy[token]
        self.progress(stage)

    def watch(self, stage: str, check: Callable[[], str | None]) -> None:
        """Ask `check` at every tick (on the pinger's thread): a text saying why `stage` is stuck stops the pings."""
        self._checks[stage] = check

    def stuck(self) -> list[str]:
        """What the watched checks say is stuck, as `stage: why`."""
        return [f"{stage}: {why}" for stage, check in list(self._checks.items()) if (why := check())]

    def set_status(self, text: str) -> None:
        """The daemon's own summary (e.g. 'connected, model loaded'); sent with the stage summary on change."""
        with self._lock:
            self._base_status = text

    def limit_s(self, stage: str) -> float:
        """How long `stage` may stay busy before the service counts as stuck."""
        return self.stage_limits_s.get(stage, self.stall_limit_s)

    def stalled(self) -> list[tuple[str, float]]:
        """Stages busy for longer than their limit, with how long they have been busy (oldest first)."""
        now = self._clock()
        with self._lock:
            ages = sorted(((stage, now - started) for stage, started, _ in self._busy.values()), key=lambda a: -a[1])
        return [(stage, age) for stage, age in ages if age > self.limit_s(stage)]

    def completed(self, stage: str) -> int:
        """How many units of `stage` completed so far."""
        with self._lock:
            counts = self._stages.get(stage)
            return counts.completed if counts else 0

    def status_text(self, stalled: list[tuple[str, float]] | None = None, stuck: list[str] | None = None) -> str:
        """The STATUS= text: the daemon's summary, then what is stuck or busy (no counters: it changes rarely)."""
        stalled = self.stalled() if stalled is None else stalled
        stuck = self.stuck() if stuck is None else stuck
        with self._lock:
            base = self._base_status
            busy = sorted({stage for stage, _, quiet in self._busy.values() if not quiet})
        if stalled or stuck:
            stages = ", ".join(sorted({stage for stage, _ in stalled}))
            limits = ", ".join(f"{s} {self.limit_s(s):g} s" for s in sorted({stage for stage, _ in stalled}))
            what = [f"{stages} busy for longer than the limit ({limits})"] if stalled else []
            return f"{base}; STALLED: {'; '.join(what + stuck)}"
        return f"{base}; busy: {', '.join(busy)}" if busy else f"{base}; idle"

    def tick(self) -> bool:
        """Send STATUS= if it changed and WATCHDOG=1 unless a stage is stalled; True when a ping was sent."""
        stalled, stuck = self.stalled(), self.stuck()
        if (stalled or stuck) and not self._was_stalled:
            why = [f"{stage} busy for {age:.0f} s (limit {self.limit_s(stage):g} s)" for stage, age in stalled[:1]]
            log.error("watchdog: %s; no more pings, systemd will restart the service", "; ".join(why + stuck))
        elif self._was_stalled and not (stalled or stuck):
            log.warning("watchdog: the stalled stage finished; pinging again")
        self._was_stalled = bool(stalled or stuck)
        status = self.status_text(stalled, stuck)  # the same snapshot: never a ping after a STALLED status
        if status != self._sent_status and self.notifier.status(status):
            self._sent_status = status
        return not self._was_stalled and self.interval_s is not None and self.notifier.watchdog()

    @property
    def period_s(self) -> float | None:
        """Seconds between ticks: half the watchdog interval, the status period without one, None without systemd."""
        if not self.notifier.enabled:
            return None
        return self.interval_s / 2 if self.interval_s is not None else STATUS_PERIOD_S

    def run(self, stop: threading.Event) -> None:
        """Blocking: tick until `stop` is set (returns at once when not under systemd)."""
        period = self.period_s
        if period is None:
            return
        while not stop.is_set():
            self.tick()
            stop.wait(period)

    async def run_async(self) -> None:
        """Tick on the event loop until cancelled (returns at once when not under systemd)."""
        period = self.period_s
        if period is None:
            return
        while True:
            self.tick()
            await asyncio.sleep(period)
