"""SQLite files the node keeps (the spool, the timeline): integrity check, transactions, damaged files moved aside."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SIDE_FILES = ("-wal", "-shm")


class DamagedFileError(sqlite3.DatabaseError):
    """The integrity check found the file damaged."""


def is_damage(exc: BaseException) -> bool:
    """A damaged file ("database disk image is malformed", "file is not a database"), not a full or read-only
    disk, a lock or a missing directory: only those are moved aside."""
    if isinstance(exc, DamagedFileError):
        return True
    name = str(getattr(exc, "sqlite_errorname", ""))  # Python 3.11+
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    text = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text)


def quick_check(db: sqlite3.Connection) -> str | None:
    """SQLite's `PRAGMA quick_check`: None when the file is sound, else what is wrong (raises when unreadable)."""
    problems = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall() if row[0] != "ok"]
    return "; ".join(problems[:3]) or None


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (one fsync at COMMIT); rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # nothing left to roll back, or the file is gone
            db.execute("ROLLBACK")
        raise


def move_aside(path: Path, now: float | None = None) -> Path:
    """Rename `path` (and its -wal/-shm) to `<name>.corrupt-<UTC time>`; a stale WAL must never meet a new file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
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
