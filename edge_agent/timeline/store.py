"""The timeline store (synchronous; the `Timeline` writer thread owns it in the daemon): insert in batches, enforce
retention by age and bytes, query. A damaged file is moved aside and a new one started; a disk that refuses (full,
read-only) costs the entries it refused, one log line, and `health` says so; the node never stops for it."""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_agent.config import Config
from edge_agent.config.timeline import TimelineConfig
from edge_agent.sqlite_files import is_damage, move_aside, transaction
from edge_agent.timeline.db import COLUMNS, connect, file_bytes, open_reader, wal_limit
from edge_agent.timeline.entries import Entry
from edge_agent.timeline.files import remove_files, save_snapshot
from edge_agent.timeline.query import TimelineQuery

log = logging.getLogger("edge_agent.timeline")
DATABASE = "timeline.db"
REOPEN_AFTER_S = 30.0  # a store that could not open tries again this long after


def timeline_dir(config: Config) -> Path:
    """`timeline.path`, or `timeline/` beside the spool ($STATE_DIRECTORY or ~/.local/state/edge-agent)."""
    if config.timeline.path is not None:
        return Path(config.timeline.path)
    if config.mqtt.spool_path is not None:
        return Path(config.mqtt.spool_path).parent / "timeline"
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return (Path(state) if state else Path.home() / ".local/state/edge-agent") / "timeline"


def database_path(config: Config) -> Path:
    """The timeline's SQLite file."""
    return timeline_dir(config) / DATABASE


def entry_of(row: Sequence[Any]) -> Entry:
    """An entry from a `COLUMNS` row."""
    try:
        payload = json.loads(row[6])
    except ValueError:
        payload = {}
    return Entry(row[1], row[2], row[5], row[3], row[4], payload, None, row[0], row[7], row[8])


def select(db: sqlite3.Connection, query: TimelineQuery, limit: int, now: float | None = None) -> list[Entry]:
    """The entries matching `query`, newest first, at most `limit`."""
    where, params = query.where(now)
    sql = f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY ts DESC, id DESC LIMIT ?"
    return [entry_of(row) for row in db.execute(sql, [*params, min(limit, query.limit or limit)])]


def read_entries(path: Path, query: TimelineQuery, limit: int) -> list[Entry]:
    """Query a timeline file directly (the CLI, while the daemon runs)."""
    db = open_reader(path)
    try:
        return select(db, query, limit)
    finally:
        db.close()


class TimelineStore:
    """The database and its snapshot files in one directory."""

    def __init__(self, root: Path, config: TimelineConfig, clock: Callable[[], float] = time.time) -> None:
        self.root, self.config, self.clock = root, config, clock
        self.path = root / DATABASE
        self.max_bytes = int(config.max_mb * 2**20)
        self.db: sqlite3.Connection | None = None
        self.error: str | None = None
        self.recorded = self.dropped = self.expired = 0  # entries stored, refused by the disk, removed by retention
        self.entries = self.used = 0  # after the last insert or enforcement
        self.files_total = 0  # bytes of snapshot and thumbnail files
        self._added, self._enforced_at, self._open_tried = 0, 0.0, 0.0
        self._snapshots_failing = False  # the last snapshot could not be written: said once, not per snapshot
        self.open()

    def open(self) -> bool:
        """Open the file (moving a damaged one aside) and enforce retention; False (and `error`) when it cannot."""
        self._open_tried = time.monotonic()
        try:
            self.db = self._connect()
            self.enforce()
        except (sqlite3.Error, OSError) as exc:
            self._close()
            self._failed("open", exc)
            return False
        if self.error is not None:
            log.info("timeline: %s works again", self.path)
        self.error = None
        return True

    def _connect(self) -> sqlite3.Connection:
        try:
            return connect(self.path, self.max_bytes)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            aside = move_aside(self.path)
            log.error("timeline: %s is damaged (%s); kept as %s, a new timeline starts", self.path, exc, aside)
            return connect(self.path, self.max_bytes)

    def _close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def _failed(self, doing: str, exc: BaseException) -> None:
        error = f"cannot {doing} {self.path}: {exc}"
        if error != self.error:  # one line per new problem, not per entry
            log.error("timeline: %s; entries are not recorded until it works (see health.timeline)", error)
        self.error = error

    def _ready(self) -> bool:
        if self.db is None and time.monotonic() - self._open_tried >= REOPEN_AFTER_S:
            self.open()
        return self.db is not None

    def add(self, entries: Sequence[Entry]) -> list[Entry]:
        """Store entries (and their snapshots) in one transaction; the stored ones come back with their ids."""
        if not entries:
            return []
        if not self._ready():
            self.dropped += len(entries)
            return []
        rows = [self._row(entry) for entry in entries]
        try:
            stored = self._insert(rows)
        except sqlite3.Error as exc:
            remove_files(self.root, [name for _, row in rows for name in (row[6], row[7])])
            self.dropped += len(entries)
            if is_damage(exc):
                self._close()
                self._failed("write", exc)
                self._open_tried = 0.0  # moved aside at the next entry
            else:
                self._failed("write", exc)
            return []
        if self.error is not None and not self._snapshots_failing:
            log.info("timeline: %s works again", self.path)
            self.error = None
        self._maybe_enforce()
        return stored

    def _row(self, entry: Entry) -> tuple[Entry, tuple[Any, ...]]:
        text = entry.text[: self.config.max_text_chars]
        payload = json.dumps(entry.payload, separators=(",", ":"), ensure_ascii=False, default=str)
        if len(payload) > self.config.max_payload_bytes:
            payload = json.dumps({"truncated": True, "bytes": len(payload)})
        snapshot = thumb = None
        size = 0
        if entry.snapshot is not None and self.config.snapshots:
            try:
                snapshot, thumb, size = save_snapshot(
                    self.root, entry.ts, entry.snapshot, self.config.thumbnail_px, self.config.thumbnail_quality
                )
                self._snapshots_failing = False
            except OSError as exc:
                self._snapshots_failing = True
                self._failed("store a snapshot beside", exc)
        return entry, (entry.ts, entry.kind, entry.task, entry.camera, text, payload, snapshot, thumb, size)

    def _insert(self, rows: list[tuple[Entry, tuple[Any, ...]]]) -> list[Entry]:
        assert self.db is not None
        stored = []
        with transaction(self.db) as db:
            for entry, row in rows:
                cursor = db.execute(
                    "INSERT INTO entries (ts, kind, task, camera, text, payload, snapshot, thumbnail, file_bytes)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                ts, kind, task, camera, text, _, snapshot, thumbnail, _ = row
                stored.append(
                    Entry(ts, kind, text, task, camera, entry.payload, None, cursor.lastrowid, snapshot, thumbnail)
                )
        self.files_total += sum(row[8] for _, row in rows)
        self.entries += len(rows)
        self.recorded += len(rows)
        self._added += len(rows)
        return stored

    def _maybe_enforce(self) -> None:
        self.used = self.used_bytes()
        due = self._added >= self.config.retention_every or self.used > self.max_bytes
        if due or time.monotonic() - self._enforced_at >= self.config.retention_interval_s:
            try:
                self.enforce()
            except sqlite3.Error as exc:
                self._failed("enforce retention on", exc)

    def used_bytes(self) -> int:
        """Disk taken now: the database file, its WAL and index, and every snapshot and thumbnail."""
        return file_bytes(self.path) + self.files_total

    def enforce(self) -> None:
        """Delete entries older than max_age_days; over max_mb, delete the oldest down to 90% of it less the WAL's
        room (so the next enforcement is not at the next entry)."""
        assert self.db is not None
        self._added, self._enforced_at = 0, time.monotonic()
        self._delete("ts < ?", (self.clock() - self.config.max_age_days * 86400,))
        self.files_total = int(self.db.execute("SELECT COALESCE(SUM(file_bytes), 0) FROM entries").fetchone()[0])
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        used = self.used_bytes()
        if used > self.max_bytes:
            target = int(self.max_bytes * 0.9) - wal_limit(self.max_bytes)
            while used > target:
                count = self.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
                if count == 0:
                    break
                drop = max(1, min(count, math.ceil((used - target) / (used / count))))
                self._delete("id IN (SELECT id FROM entries ORDER BY ts, id LIMIT ?)", (drop,))
                used = self.used_bytes()
        self.used = used
        self.entries = self.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def _delete(self, where: str, params: tuple[Any, ...]) -> None:
        assert self.db is not None
        files = self.db.execute(f"SELECT snapshot, thumbnail, file_bytes FROM entries WHERE {where}", params).fetchall()
        with transaction(self.db) as db:
            deleted = db.execute(f"DELETE FROM entries WHERE {where}", params).rowcount
        if deleted <= 0:
            return
        self.expired += deleted
        self.entries -= deleted
        self.files_total -= sum(int(row[2]) for row in files)
        remove_files(self.root, [name for row in files for name in row[:2]])
        self.db.execute("PRAGMA incremental_vacuum")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def query(self, query: TimelineQuery, now: float | None = None) -> list[Entry]:
        """The entries matching `query`, newest first, at most timeline.query_limit (ValueError when unreadable)."""
        if not self._ready():
            raise ValueError(f"the timeline is not available: {self.error}")
        assert self.db is not None
        try:
            return select(self.db, query, self.config.query_limit, now)
        except sqlite3.Error as exc:
            self._failed("read", exc)
            raise ValueError(f"the timeline cannot be read: {exc}") from None

    def health(self) -> dict[str, Any]:
        """The timeline's part of the `health` JSON."""
        return {
            "ok": self.error is None,
            "error": self.error,
            "entries": self.entries,
            "bytes": self.used,
            "recorded": self.recorded,
            "dropped": self.dropped,
            "expired": self.expired,
        }

    def close(self) -> None:
        """Close the file."""
        self._close()
