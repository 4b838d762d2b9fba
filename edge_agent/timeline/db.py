"""The timeline's SQLite file: schema, WAL sized to the byte budget, the integrity check at open, and moving a damaged
file aside (kept for inspection)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    task TEXT,
    camera TEXT,
    text TEXT NOT NULL,
    payload TEXT NOT NULL,
    snapshot TEXT,
    thumbnail TEXT,
    file_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_ts ON entries (ts);
CREATE INDEX IF NOT EXISTS entries_task ON entries (task, ts);
CREATE INDEX IF NOT EXISTS entries_camera ON entries (camera, ts);
CREATE INDEX IF NOT EXISTS entries_kind ON entries (kind, ts);
"""
COLUMNS = "id, ts, kind, task, camera, text, payload, snapshot, thumbnail"
SIDE_FILES = ("-wal", "-shm")
PAGE = 4096


class DamagedTimelineError(sqlite3.DatabaseError):
    """The integrity check found the file damaged."""


def is_damage(exc: BaseException) -> bool:
    """A damaged file (malformed, not a database), not a full or read-only disk: only those are moved aside."""
    if isinstance(exc, DamagedTimelineError):
        return True
    name = str(getattr(exc, "sqlite_errorname", ""))  # Python 3.11+
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    text = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text)


def wal_limit(max_bytes: int) -> int:
    """The WAL's size after a checkpoint: an eighth of the budget, 64 KiB to 4 MiB."""
    return max(16 * PAGE, min(4 << 20, max_bytes // 8))


def connect(path: Path, max_bytes: int) -> sqlite3.Connection:
    """Open (or create) the file: integrity check, incremental vacuum (deleted entries give their pages back),
    WAL kept well under the byte budget, schema. DamagedTimelineError or the SQLite error when it is damaged;
    sqlite3.OperationalError or OSError when it cannot be opened at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        problems = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall() if row[0] != "ok"]
        if problems:
            raise DamagedTimelineError("; ".join(problems[:3]))
        wal_bytes = wal_limit(max_bytes)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # applies to a new file, before its first table
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA journal_size_limit={wal_bytes}")
        db.execute(f"PRAGMA wal_autocheckpoint={wal_bytes // PAGE}")
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def open_reader(path: Path) -> sqlite3.Connection:
    """A connection that only reads an existing file (works while the daemon writes it: WAL); FileNotFoundError
    when there is none, sqlite3.Error when it cannot be read."""
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5.0)
    except sqlite3.OperationalError:  # no write access to the file: read-only still reads a clean one
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    db.execute("PRAGMA query_only=ON")
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction; rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def move_aside(path: Path) -> Path:
    """Rename `path` (and its -wal/-shm) to `<name>.corrupt-<UTC time>`; a stale WAL must never meet a new file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.corrupt-{stamp}.{n}"), n + 1
    path.rename(target)
    for suffix in SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            try:
                side.rename(target.with_name(target.name + suffix))
            except OSError:
                side.unlink()
    return target


def file_bytes(path: Path) -> int:
    """The database's size on disk, its WAL and shared-memory index included."""
    total = 0
    for suffix in ("", *SIDE_FILES):
        with contextlib.suppress(OSError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total
