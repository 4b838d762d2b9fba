"""The timeline's SQLite file: schema, WAL sized to the byte budget, the integrity check at open, and moving a damaged
file aside (kept for inspection)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from edge_agent.sqlite_files import SIDE_FILES, DamagedFileError, quick_check

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
PAGE = 4096


class DamagedTimelineError(DamagedFileError):
    """The integrity check found the timeline file damaged."""


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
        problem = quick_check(db)
        if problem is not None:
            raise DamagedTimelineError(problem)
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


def file_bytes(path: Path) -> int:
    """The database's size on disk, its WAL and shared-memory index included."""
    total = 0
    for suffix in ("", *SIDE_FILES):
        with contextlib.suppress(OSError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total
