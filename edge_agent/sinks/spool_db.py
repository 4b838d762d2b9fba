"""The spool's SQLite file: its schema, the integrity check at open, moving a corrupt file aside (kept for
inspection) and salvaging what can still be read from it. Plain functions; `Spool` decides when to use them."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from edge_agent.sqlite_files import DamagedFileError, is_damage, move_aside, quick_check

SCHEMA = """
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
CREATE INDEX IF NOT EXISTS messages_retained ON messages (topic) WHERE retain = 1;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS notes (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
COLUMNS = "seq, id, topic, payload, qos, retain, created"


@dataclass(frozen=True, order=True)
class Spooled:
    """One message waiting for the broker's acknowledgement (ordered by `seq`)."""

    seq: int
    id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float

    @classmethod
    def of(cls, row: tuple[int, str, str, bytes, int, int, float]) -> Spooled:
        """A message from a `COLUMNS` row."""
        return cls(row[0], row[1], row[2], bytes(row[3]), row[4], bool(row[5]), row[6])


class CorruptSpoolError(DamagedFileError):
    """The integrity check found the spool file damaged."""


is_corruption = is_damage  # the spool's name for it


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open (or create) the spool file: integrity check, WAL, schema. CorruptSpoolError (or the SQLite error)
    when it is damaged; sqlite3.OperationalError or OSError when it cannot be opened at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        problem = quick_check(db)
        if problem is not None:
            raise CorruptSpoolError(problem)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def salvage(path: Path, skip: set[int], max_messages: int, max_bytes: int) -> list[Spooled]:
    """The waiting messages still readable in a damaged file, newest first until the bounds, then oldest:
    a damaged page in the middle costs only the messages on it."""
    found: dict[int, Spooled] = {}
    size = 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        for order in ("DESC", "ASC"):
            try:
                for row in db.execute(f"SELECT {COLUMNS} FROM messages ORDER BY seq {order}"):
                    message = Spooled.of(row)
                    if message.seq in found or len(found) >= max_messages or size > max_bytes:
                        break  # the two scans met, or memory is full
                    if message.seq not in skip:
                        found[message.seq] = message
                        size += len(message.payload)
            except sqlite3.Error:
                continue  # this scan reached the damage
    finally:
        db.close()
    return sorted(found.values())


def replace(path: Path, skip: set[int], max_messages: int, max_bytes: int) -> tuple[Path, list[Spooled]]:
    """Salvage a corrupt file, then move it aside (OSError when it cannot be): where it went, what was read."""
    kept = salvage(path, skip, max_messages, max_bytes)
    return move_aside(path), kept


@dataclass(frozen=True)
class Inspection:
    """What `doctor` reports about a spool file."""

    problem: str | None  # None: sound
    corrupt: bool
    depth: int = 0
    payload_bytes: int = 0


def inspect(path: Path) -> Inspection:
    """The integrity check `Spool` runs at open, done read-only (it never creates a file next to a running
    node's spool, which another user would then own)."""
    wal = path.with_name(path.name + "-wal").exists()
    uri = f"file:{path}?mode=ro" if wal else f"file:{path}?immutable=1"  # no -wal: everything is in the file
    try:
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        return Inspection(f"cannot open it: {exc}", corrupt=False)
    try:
        problem = quick_check(db)
        if problem is not None:
            return Inspection(problem, corrupt=True)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone() is None:
            return Inspection(None, corrupt=False)  # an empty file: the node fills it in
        depth, size = db.execute("SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM messages").fetchone()
        return Inspection(None, corrupt=False, depth=int(depth), payload_bytes=int(size))
    except sqlite3.Error as exc:
        return Inspection(str(exc), corrupt=is_corruption(exc))
    finally:
        db.close()


def size_of(db: sqlite3.Connection, where: str, args: tuple[object, ...]) -> tuple[int, int]:
    """How many messages match `where`, and their payload bytes."""
    row = db.execute(f"SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM messages WHERE {where}", args)
    count, size = row.fetchone()
    return int(count), int(size)


def delete(db: sqlite3.Connection, where: str, args: tuple[object, ...]) -> tuple[int, int]:
    """Delete the messages matching `where`; how many there were, and their payload bytes."""
    count, size = size_of(db, where, args)
    if count:
        db.execute(f"DELETE FROM messages WHERE {where}", args)
    return count, size


def delete_seqs(db: sqlite3.Connection, seqs: list[int]) -> tuple[int, int]:
    """Delete these messages (acknowledged, or superseded); how many were there, and their payload bytes."""
    count = size = 0
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        n, b = delete(db, f"seq IN ({','.join('?' * len(chunk))})", tuple(chunk))
        count, size = count + n, size + b
    return count, size


def oldest_cut(db: sqlite3.Connection, count: int, size: int, newest: int) -> int:
    """The seq up to which the oldest messages must go so that `count` messages and `size` bytes are freed
    (0: none); never the newest message."""
    cut = freed_count = freed_size = 0
    rows = db.execute("SELECT seq, length(payload) FROM messages WHERE seq < ? ORDER BY seq", (newest,))
    for seq, length in rows:
        if freed_count >= count and freed_size >= size:
            break
        cut, freed_count, freed_size = seq, freed_count + 1, freed_size + int(length)
    rows.close()
    return cut


def insert(db: sqlite3.Connection, message: Spooled) -> bool:
    """Store a message under its own seq (kept across memory and fresh files); False if its id is already in."""
    cursor = db.execute(
        f"INSERT OR IGNORE INTO messages ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (message.seq, message.id, message.topic, message.payload, message.qos, int(message.retain), message.created),
    )
    return cursor.rowcount == 1


def read_state(db: sqlite3.Connection) -> tuple[int, int, int, dict[str, int], dict[str, str]]:
    """Depth, payload bytes, the highest seq ever used, the counters and the notes of an open spool."""
    depth, size = size_of(db, "1", ())
    top = db.execute("SELECT MAX(seq) FROM messages").fetchone()[0] or 0
    used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    counters = {str(name): int(value) for name, value in db.execute("SELECT name, value FROM counters")}
    notes = {str(name): str(value) for name, value in db.execute("SELECT name, value FROM notes")}
    return depth, size, max(int(top), int(used[0]) if used else 0), counters, notes


def save(db: sqlite3.Connection, counters: dict[str, int], notes: dict[str, str]) -> None:
    """Write counters and notes (inside the caller's transaction)."""
    db.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        list(counters.items()),
    )
    db.executemany(
        "INSERT INTO notes (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        list(notes.items()),
    )


def last_seq(path: Path) -> int:
    """The highest seq a file that cannot be opened for writing holds (read without locks); when it cannot be
    read at all, one above any seq a run could have given (microseconds since 1970)."""
    try:
        if not path.exists():
            return 0
        db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return read_state(db)[2]
        finally:
            db.close()
    except (sqlite3.Error, OSError):
        return int(time.time() * 1e6)
