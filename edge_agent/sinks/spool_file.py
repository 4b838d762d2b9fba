"""One open, checked spool file and what is on it. Every method raises sqlite3.Error or OSError when the disk
fails; `Spool` decides what to do then (memory, moving a corrupt file aside)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from edge_agent.sinks import spool_db
from edge_agent.sinks.spool_db import COLUMNS, Spooled
from edge_agent.sqlite_files import transaction


@dataclass(frozen=True)
class Bounds:
    """What the file may hold: the oldest go first beyond these."""

    max_messages: int
    max_bytes: int
    max_age_s: float


@dataclass(frozen=True)
class Dropped:
    """What one write dropped to stay within the bounds."""

    old: int = 0  # older than max_age_s
    over: int = 0  # beyond max_messages or max_bytes


class SpoolFile:
    """The SQLite file (checked at open; CorruptSpoolError if damaged), its depth and payload bytes."""

    def __init__(self, path: Path, synchronous: str, counters: dict[str, int], notes: dict[str, str]) -> None:
        self.synchronous = synchronous
        self.db = spool_db.connect(path, synchronous)
        try:
            self.depth, self.bytes, self.last_seq, saved, saved_notes = spool_db.read_state(self.db)
            self.counters = {name: max(value, saved.get(name, 0)) for name, value in counters.items()}
            self.notes = {**saved_notes, **notes}  # ours are newer (a fresh file after a corrupt one)
            if any(saved.get(name) != value for name, value in self.counters.items()) or saved_notes != self.notes:
                with transaction(self.db):
                    spool_db.save(self.db, self.counters, self.notes)
        except BaseException:
            self.close()
            raise

    def write(
        self, messages: list[Spooled], owed: list[int], bounds: Bounds, counters: dict[str, int], notes: dict[str, str]
    ) -> Dropped:
        """One transaction: deletions owed, `messages` (a retained one replaces those waiting on its topic), the
        bounds (never the last message), the counters and notes (`counters['dropped']` gains what was dropped)."""
        depth, size = self.depth, self.bytes
        with transaction(self.db) as db:
            n, b = spool_db.delete_seqs(db, owed)
            depth, size = depth - n, size - b
            for message in messages:
                if message.retain:  # an outage never replays a superseded retained result
                    n, b = spool_db.delete(db, "topic = ? AND retain = 1", (message.topic,))
                    depth, size = depth - n, size - b
                if spool_db.insert(db, message):
                    depth, size = depth + 1, size + len(message.payload)
            depth, size, dropped = self._trim(db, depth, size, messages[-1] if messages else None, bounds)
            counters = {**counters, "dropped": counters.get("dropped", 0) + dropped.old + dropped.over}
            if counters != self.counters or notes != self.notes:
                spool_db.save(db, counters, notes)
        self.depth, self.bytes, self.counters, self.notes = depth, size, counters, dict(notes)
        return dropped

    @staticmethod
    def _trim(
        db: sqlite3.Connection, depth: int, size: int, newest: Spooled | None, bounds: Bounds
    ) -> tuple[int, int, Dropped]:
        """Drop what is too old, then the oldest beyond the bounds (never `newest`, the message just written)."""
        now = newest.created if newest is not None else time.time()
        old, old_size = spool_db.delete(db, "created < ?", (now - bounds.max_age_s,))
        depth, size = depth - old, size - old_size
        over = over_size = 0
        if depth > bounds.max_messages or size > bounds.max_bytes:
            keep = newest.seq if newest is not None else 2**62
            last = spool_db.oldest_cut(db, depth - bounds.max_messages, size - bounds.max_bytes, keep)
            over, over_size = spool_db.delete(db, "seq <= ?", (last,)) if last else (0, 0)
        return depth - over, size - over_size, Dropped(old, over)

    def read(self, after_seq: int, limit: int) -> list[Spooled]:
        """Up to `limit` messages after `after_seq`, oldest first."""
        query = f"SELECT {COLUMNS} FROM messages WHERE seq > ? ORDER BY seq LIMIT ?"
        return [Spooled.of(row) for row in self.db.execute(query, (after_seq, limit))]

    def delete(self, seqs: list[int]) -> None:
        """Forget acknowledged messages, without an fsync (a lost acknowledgement is only a duplicate)."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction(self.db) as db:
                deleted, size = spool_db.delete_seqs(db, seqs)
        finally:
            self.db.execute(f"PRAGMA synchronous={self.synchronous}")
        self.depth, self.bytes = self.depth - deleted, self.bytes - size

    def close(self) -> None:
        """Close the connection (whatever state the file is in)."""
        with contextlib.suppress(sqlite3.Error):  # a damaged or vanished file: nothing more to save from it
            self.db.close()
