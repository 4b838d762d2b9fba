"""Per-tool sliding-window rate limits and the bounded, expiring store of calls awaiting confirmation."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.tools.outcome import CallInfo

WINDOW_S = 60.0
MAX_CALL_ID = 64  # longest call id a confirmation may name (ours are 32 hex digits)


class RateLimiter:
    """At most `per_min` calls in any 60 s window; a refused call does not count."""

    def __init__(self, per_min: int, clock: Callable[[], float]) -> None:
        self.per_min = per_min
        self._clock = clock
        self._times: deque[float] = deque()

    def try_acquire(self) -> bool:
        """Count a call and return True, or return False when the window is full."""
        now = self._clock()
        while self._times and now - self._times[0] >= WINDOW_S:
            self._times.popleft()
        if len(self._times) >= self.per_min:
            return False
        self._times.append(now)
        return True

    def adopt(self, old: RateLimiter) -> None:
        """Carry the calls counted by the limiter this one replaces (a reload): its window still holds."""
        self._times = deque(old._times)

    def retry_after_s(self) -> float:
        """Seconds until the next call would be allowed (0 when it would be now)."""
        if len(self._times) < self.per_min:
            return 0.0
        return max(0.0, self._times[0] + WINDOW_S - self._clock())


@dataclass(frozen=True)
class PendingCall:
    """A validated call kept until it is confirmed or expires."""

    call: CallInfo
    expires: float  # clock time


class PendingCalls:
    """Calls awaiting confirmation: at most `capacity` (oldest dropped), each for `ttl_s` seconds."""

    def __init__(self, clock: Callable[[], float], ttl_s: float = 60.0, capacity: int = 32) -> None:
        self._clock = clock
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._calls: OrderedDict[str, PendingCall] = OrderedDict()

    def add(self, call: CallInfo) -> PendingCall:
        """Keep a call; the oldest one is dropped when the store is full."""
        self._expire()
        pending = PendingCall(call, self._clock() + self.ttl_s)
        self.keep(pending)
        return pending

    def keep(self, pending: PendingCall) -> None:
        """Hold a call taken over from another store (a reload), with its own expiry; the oldest go when full."""
        self._calls[pending.call.id] = pending
        while len(self._calls) > self.capacity:
            self._calls.popitem(last=False)
        self._expire()

    def drain(self) -> list[PendingCall]:
        """Every call still held (oldest first), removed from this store."""
        self._expire()
        calls, self._calls = list(self._calls.values()), OrderedDict()
        return calls

    def take(self, call_id: str) -> CallInfo | None:
        """Remove and return the call, or None when it is unknown, expired or already taken."""
        if len(call_id) > MAX_CALL_ID:
            return None
        self._expire()
        pending = self._calls.pop(call_id, None)
        return None if pending is None else pending.call

    def __len__(self) -> int:
        self._expire()
        return len(self._calls)

    def _expire(self) -> None:
        now = self._clock()
        for call_id in [key for key, call in self._calls.items() if call.expires <= now]:
            del self._calls[call_id]
