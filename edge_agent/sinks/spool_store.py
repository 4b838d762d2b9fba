"""The spool's store, used from one thread at a time: the SQLite file, checked at open (a corrupt one is moved
aside, kept, and a fresh one started with what could be read), and a bounded memory queue while the file cannot be
written (full, read-only, I/O errors), whose results go back to the file once it can be. Every drop is counted."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from edge_agent.sinks import spool_db
from edge_agent.sinks.spool_db import Spooled
from edge_agent.sinks.spool_file import Bounds, SpoolFile
from edge_agent.sinks.spool_memory import MemoryQueue

log = logging.getLogger("edge_agent.sinks.spool")
MEMORY_MAX_MESSAGES = 1000
MEMORY_MAX_BYTES = 16 << 20
RETRY_S = 5.0  # least time between two attempts at a file that could not be written
DiskError = (sqlite3.Error, OSError)


class SpoolStore:
    """A bounded FIFO on disk (in memory while the disk fails): beyond the bounds the oldest are dropped and
    counted, and a retained message replaces the ones waiting for the same topic."""

    def __init__(
        self,
        path: Path,
        max_messages: int = 10000,
        max_age_s: float = 7 * 86400,
        sync: bool = True,
        max_bytes: int = 100 << 20,
    ) -> None:
        self.path, self.max_messages, self.max_age_s, self.max_bytes = path, max_messages, max_age_s, max_bytes
        self._bounds = Bounds(max_messages, max_bytes, max_age_s)
        self._sync = "FULL" if sync else "NORMAL"  # FULL: a stored result survives power loss
        self._lock = threading.RLock()
        self._file: SpoolFile | None = None
        self._memory = MemoryQueue(min(max_messages, MEMORY_MAX_MESSAGES), min(max_bytes, MEMORY_MAX_BYTES))
        self._last_seq = 0  # seqs only grow, across memory and fresh files: one seq names one message
        self._counters = {"dropped": 0, "corrupt": 0}
        self._notes: dict[str, str] = {}
        self._unacked: set[int] = set()  # acknowledged, but the file could not delete them yet
        self._in_flight: set[int] = set()  # handed to the broker, not yet acknowledged (as the link last said)
        self._retry_at = 0.0
        self._overflowing: set[str] = set()  # drop episodes already logged
        self.write_errors = 0
        self.error: str | None = None  # why the file cannot be written now
        self.on_change: Callable[[], None] = lambda: None  # `error` came or went (called on the writing thread)
        with self._lock:
            self._open()

    def _open(self) -> bool:
        try:
            self._file = SpoolFile(self.path, self._sync, self._counters, self._notes)
        except DiskError as exc:
            if spool_db.is_corruption(exc):
                return self._replace(str(exc), lost=None)
            self._failed("open", exc)
            if self._last_seq == 0:  # never opened: new seqs must not collide with those the file holds
                self._last_seq = spool_db.last_seq(self.path)
            return False
        self._last_seq = max(self._last_seq, self._file.last_seq)
        self._counters, self._notes = dict(self._file.counters), {**self._file.notes, **self._notes}
        if self._file.depth > self.max_messages or self._file.bytes > self.max_bytes:
            self._store(None)  # the bounds were lowered (or older runs overfilled it): trim now
        return True

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _failed(self, doing: str, exc: BaseException) -> None:
        """The file refused: count it, say so once, try again after RETRY_S; results wait in memory meanwhile."""
        self.write_errors += 1
        self._retry_at = time.monotonic() + RETRY_S
        if self.error is None:
            memory = f"at most {self._memory.max_messages} results, {self._memory.max_bytes / 2**20:g} MB"
            log.error("spool: cannot %s %s (%s); results wait in memory (%s)", doing, self.path, exc, memory)
        self._set_error(f"cannot {doing} {self.path}: {exc}")

    def _set_error(self, error: str | None) -> None:
        changed = (error is None) != (self.error is None)
        self.error = error
        if changed:
            self.on_change()

    def _disk_failed(self, doing: str, exc: BaseException) -> bool:
        """A failed write or read; True when a fresh file replaced a corrupt one (so try again)."""
        if spool_db.is_corruption(exc):
            self.write_errors += 1
            sent = sum(seq not in self._memory for seq in self._in_flight)  # the broker gets those anyway
            on_disk = self._file.depth - len(self._unacked) - sent if self._file is not None else 0
            return self._replace(str(exc), lost=on_disk)
        self._failed(doing, exc)
        return False

    def _replace(self, why: str, lost: int | None) -> bool:
        """A corrupt file: keep what can still be read, move it aside for inspection, start a fresh one."""
        self._close_file()
        room = self._memory.max_messages - len(self._memory), self._memory.max_bytes - self._memory.bytes
        try:
            target, kept = spool_db.replace(self.path, self._unacked | self._in_flight, *room)
        except OSError as exc:
            self._failed("move aside the corrupt", exc)
            return False
        for message in kept:
            self._drop(self._memory.add(message))
        lost = None if lost is None else max(0, lost - len(kept))
        self._counters["dropped"] += lost or 0
        self._counters["corrupt"] += 1
        self._unacked.clear()
        where = f"moved it aside to {target}, fresh spool started ({len(kept)} waiting result(s) recovered"
        log.error("spool: %s is corrupt (%s); %s%s)", self.path, why, where, "" if lost is None else f", {lost} lost")
        return self._open()

    def _disk_ready(self) -> bool:
        if self.error is not None and time.monotonic() < self._retry_at:
            return False
        return self._file is not None or self._open()

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
        """Store a message (before it is published) on disk, or in memory while the disk fails; enforce the bounds."""
        with self._lock:
            self._last_seq += 1
            when = time.time() if created is None else created
            message = Spooled(self._last_seq, message_id or uuid.uuid4().hex, topic, payload, qos, retain, when)
            if retain:
                self._memory.supersede(topic)
            if not self._store(message):
                self._drop(self._memory.add(message))
            return message

    def _store(self, message: Spooled | None) -> bool:
        for _attempt in range(2):  # twice: on a fresh file after a corrupt one was moved aside
            if not self._disk_ready() or self._file is None:
                return False
            kept = self._memory.oldest_first()
            backlog = [*kept, *([message] if message is not None else [])]
            try:
                dropped = self._file.write(backlog, sorted(self._unacked), self._bounds, self._counters, self._notes)
            except DiskError as exc:
                if not self._disk_failed("write", exc):
                    return False
                continue
            self._counters = dict(self._file.counters)
            self._unacked.clear()
            self._memory.clear()
            self._overflow(dropped.old, f"results older than mqtt.spool_max_age_h ({self.max_age_s / 3600:g} h)")
            limits = f"{self.max_messages} results or {self.max_bytes / 2**20:g} MB"
            self._overflow(dropped.over, f"the spool is full ({limits}: mqtt.spool_max_messages, mqtt.spool_max_mb)")
            if self.error is not None:
                log.info("spool: %s is written again, with the %d result(s) kept in memory", self.path, len(kept))
                self._set_error(None)
            return True
        return False

    def _drop(self, count: int) -> None:
        if count:
            self._counters["dropped"] += count
            limits = f"{self._memory.max_messages} results or {self._memory.max_bytes / 2**20:g} MB"
            self._overflow(count, f"the memory queue is full ({limits}) while {self.path} cannot be written")

    def _overflow(self, count: int, why: str) -> None:
        """One log line per overflow episode (until the spool drains to half its bounds)."""
        if count and why not in self._overflowing:
            self._overflowing.add(why)
            log.warning("spool: dropping the oldest results: %s (counted in health.spool_dropped)", why)

    def pending(self, after_seq: int = 0, limit: int = 100, skip: Collection[int] = ()) -> list[Spooled]:
        """Messages not yet acknowledged, oldest first, from the file and from memory; not those in `skip` (in
        flight). Older ones can appear later (a file that could be opened again): hence `skip`, not a cursor."""
        with self._lock:
            self._in_flight = set(skip)
            skip, rows = {*skip, *self._unacked}, []
            if self._file is not None:
                try:
                    rows = self._file.read(after_seq, limit + len(skip) + len(self._memory))
                except DiskError as exc:
                    self._disk_failed("read", exc)
            newer = self._memory.retained_topics()
            rows = [r for r in rows if not (r.retain and r.topic in newer)]
            waiting = [m for m in [*rows, *self._memory.after(after_seq, limit + len(skip))] if m.seq not in skip]
            return sorted(waiting)[:limit]

    def ack(self, *seqs: int) -> None:
        """The broker has these messages: forget them (one transaction, no fsync: a lost ack is a duplicate)."""
        with self._lock:
            self._in_flight.difference_update(seqs)
            on_disk = sorted(set(seqs) - self._memory.remove(seqs))
            if on_disk and self._file is not None:
                try:
                    self._file.delete(on_disk)
                except DiskError as exc:
                    self._unacked.update(on_disk)  # deleted with the next write that works
                    self._disk_failed("delete acknowledged results from", exc)
            if self.depth <= self.max_messages // 2 and self.payload_bytes <= self.max_bytes // 2:
                self._overflowing.clear()

    def note(self, name: str) -> str | None:
        """A small piece of state kept with the spool (e.g. the Home Assistant entities last announced)."""
        return self._notes.get(name)

    def set_note(self, name: str, value: str) -> None:
        """Remember a small piece of state across restarts."""
        self._notes = {**self._notes, name: value}
        self._save_notes()

    def _save_notes(self) -> None:
        with self._lock:
            if self._file is None or self._notes != self._file.notes:
                self._store(None)

    @property
    def depth(self) -> int:
        """How many messages wait (on disk and in memory)."""
        file = self._file  # read from other threads: the writer may replace it meanwhile
        on_disk = file.depth - len(self._unacked) if file is not None else 0
        return max(0, on_disk) + len(self._memory)

    @property
    def payload_bytes(self) -> int:
        """Payload bytes waiting, on disk and in memory."""
        file = self._file
        return (file.bytes if file is not None else 0) + self._memory.bytes

    @property
    def dropped(self) -> int:
        """How many messages were dropped (oldest first) to keep within the bounds, or lost to corruption, ever."""
        return self._counters["dropped"]

    def health(self) -> dict[str, Any]:
        """The spool's part of the `health` JSON."""
        return {
            "spool_depth": self.depth,
            "spool_dropped": self.dropped,
            "spool_bytes": self.payload_bytes,
            "spool_memory": len(self._memory),
            "spool_write_errors": self.write_errors,
            "spool_corrupt": self._counters["corrupt"],
            "spool_writable": self.error is None,
            "spool_error": self.error,
        }

    def state(self) -> dict[str, Any]:
        """The spool's part of the `state` JSON."""
        return {"path": str(self.path), "writable": self.error is None, "error": self.error}

    def close(self) -> None:
        """Move what waits in memory to disk if it can be written now, and close the file."""
        with self._lock:
            if len(self._memory):
                self._retry_at = 0.0
                self._store(None)
            if len(self._memory):
                log.error("spool: %d result(s) held in memory could not be written and are lost", len(self._memory))
            self._close_file()
