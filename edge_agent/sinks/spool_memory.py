"""The spool's fallback while its file cannot be written: a bounded in-memory queue, oldest dropped first."""

from __future__ import annotations

from collections.abc import Iterable

from edge_agent.sinks.spool_db import Spooled


class MemoryQueue:
    """Messages the disk could not take, by seq; bounded in count and payload bytes (never the newest dropped)."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self.bytes = 0
        self._items: dict[int, Spooled] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, seq: object) -> bool:
        return seq in self._items

    def add(self, message: Spooled) -> int:
        """Keep a message; beyond the bounds drop the oldest; how many were dropped."""
        if message.seq in self._items:
            return 0
        self._items[message.seq] = message
        self.bytes += len(message.payload)
        dropped = 0
        while len(self._items) > 1 and (len(self._items) > self.max_messages or self.bytes > self.max_bytes):
            self._pop(min(self._items))
            dropped += 1
        return dropped

    def _pop(self, seq: int) -> Spooled | None:
        message = self._items.pop(seq, None)
        if message is not None:
            self.bytes -= len(message.payload)
        return message

    def remove(self, seqs: Iterable[int]) -> set[int]:
        """Forget these messages (acknowledged); the seqs that were here."""
        return {seq for seq in seqs if self._pop(seq) is not None}

    def supersede(self, topic: str) -> int:
        """A newer retained message for `topic` is coming: forget the waiting retained ones; how many."""
        old = [m.seq for m in self._items.values() if m.retain and m.topic == topic]
        return len(self.remove(old))

    def retained_topics(self) -> set[str]:
        """Topics with a retained message waiting here (newer than any on disk)."""
        return {m.topic for m in self._items.values() if m.retain}

    def after(self, seq: int, limit: int) -> list[Spooled]:
        """Up to `limit` messages after `seq`, oldest first."""
        return sorted(m for m in self._items.values() if m.seq > seq)[:limit]

    def oldest_first(self) -> list[Spooled]:
        """Every message, oldest first."""
        return sorted(self._items.values())

    def clear(self) -> None:
        """Forget everything (it is on disk now)."""
        self._items.clear()
        self.bytes = 0
