"""Durable outbound spool: results are written to SQLite (WAL) before publishing and removed on PUBACK."""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_created ON messages (created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS notes (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Spooled:
    """One message waiting for the broker's acknowledgement."""

    seq: int
    id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


class Spool:
    """A bounded on-disk FIFO; when full or too old, the oldest messages are dropped and counted."""

    def __init__(self, path: Path, max_messages: int = 10000, max_age_s: float = 7 * 86400, sync: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._sync = "FULL" if sync else "NORMAL"  # FULL: a stored result survives power loss
        self._db.execute(f"PRAGMA synchronous={self._sync}")
        self._db.executescript(_SCHEMA)
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def put(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        message_id: str | None = None,
        created: float | None = None,
    ) -> Spooled:
        """Store a message (before it is published) and enforce the bounds."""
        message_id = message_id or uuid.uuid4().hex
        created = time.time() if created is None else created
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO messages (id, topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, topic, payload, qos, int(retain), created),
            )
            self._depth += 1
            self._enforce_bounds(created)
        assert cursor.lastrowid is not None
        return Spooled(cursor.lastrowid, message_id, topic, payload, qos, retain, created)

    def _enforce_bounds(self, now: float) -> None:
        old = self._db.execute("DELETE FROM messages WHERE created < ?", (now - self.max_age_s,)).rowcount
        over = 0
        if self._depth - old > self.max_messages:  # the count is kept in memory: no scan on every put
            over = self._db.execute(
                "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages ORDER BY seq LIMIT ?)",
                (self._depth - old - self.max_messages,),
            ).rowcount
        self._depth -= old + over
        if old + over:
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (old + over,),
            )

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Spooled]:
        """Messages not yet acknowledged, oldest first."""
        rows = self._db.execute(
            "SELECT seq, id, topic, payload, qos, retain, created FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [Spooled(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5]), r[6]) for r in rows]

    def ack(self, *seqs: int) -> None:
        """The broker has these messages: forget them (in one transaction)."""
        if not seqs:
            return
        # A forgotten ack only means a duplicate after a crash (ids de-duplicate), so no fsync for it.
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._db:
                deleted = self._db.executemany("DELETE FROM messages WHERE seq = ?", [(seq,) for seq in seqs]).rowcount
        finally:
            self._db.execute(f"PRAGMA synchronous={self._sync}")
        self._depth -= deleted

    @property
    def depth(self) -> int:
        """How many messages wait."""
        return self._depth

    @property
    def dropped(self) -> int:
        """How many messages were dropped (oldest first) to keep within the bounds, ever."""
        row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return int(row[0]) if row else 0

    def note(self, name: str) -> str | None:
        """A small piece of state kept with the spool (e.g. the Home Assistant entities last announced)."""
        row = self._db.execute("SELECT value FROM notes WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def set_note(self, name: str, value: str) -> None:
        """Remember a small piece of state across restarts."""
        self._db.execute(
            "INSERT INTO notes (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def close(self) -> None:
        """Close the database."""
        self._db.close()
