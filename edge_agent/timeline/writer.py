"""The timeline in the daemon: what the node publishes is queued from the event loop and written in batches on the
timeline's own writer thread (no SQLite write, fsync or JPEG resize on the loop); queries run on that thread too."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge_agent.config.timeline import TimelineConfig
from edge_agent.timeline.entries import Entry, entry_from_result
from edge_agent.timeline.files import read_file
from edge_agent.timeline.query import TimelineQuery
from edge_agent.timeline.store import TimelineStore

log = logging.getLogger("edge_agent.timeline")
MAX_WAITING = 10000  # entries queued for the writer; beyond, new ones are counted as dropped
RECORDED_PREFIXES = ("task/", "motion/", "utterance", "tools/audit")


class Timeline:
    """The store behind its writer thread; every public method may be called from the loop."""

    def __init__(self, root: Path, config: TimelineConfig) -> None:
        self.root, self.config = root, config
        self.store: TimelineStore | None = None
        self.dropped = 0  # queued past MAX_WAITING
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="timeline-writer")
        self._waiting: deque[tuple[str, Any, Any]] = deque()
        self._lock = threading.Lock()
        self._draining = False
        self._snapshots: dict[str, bytes] = {}  # task -> the JPEG published just before its result (writer thread)
        self._executor.submit(self._open)

    def _open(self) -> None:
        self.store = TimelineStore(self.root, self.config)
        log.info("timeline: %s (%d entries, %.1f MB)", self.store.path, self.store.entries, self.store.used / 2**20)

    def published(self, suffix: str, body: bytes, created: float) -> None:
        """A result the link spooled on `<base>/<suffix>`: an event goes in, a task's snapshot waits for its answer."""
        parts = suffix.split("/")
        if len(parts) == 3 and parts[0] == "task" and parts[2] == "snapshot":
            self._queue("snapshot", parts[1], body)
        elif suffix.startswith(RECORDED_PREFIXES) and not suffix.endswith("/availability"):
            self._queue("result", suffix, (body, created))

    def add(self, entry: Entry) -> None:
        """Record an entry made by the node itself (an ask and its reply)."""
        self._queue("entry", "", entry)

    def _queue(self, what: str, key: str, value: Any) -> None:
        with self._lock:
            if len(self._waiting) >= MAX_WAITING:
                self.dropped += 1
                return
            self._waiting.append((what, key, value))
            if self._draining:
                return
            self._draining = True
        self._executor.submit(self._drain)

    def _drain(self) -> None:
        """Everything waiting, in one transaction (writer thread)."""
        with self._lock:
            batch, self._draining = list(self._waiting), False
            self._waiting.clear()
        entries: list[Entry] = []
        for what, key, value in batch:
            if what == "snapshot":
                self._snapshots[key] = value
                continue
            entry = value if what == "entry" else entry_from_result(key, *value)
            if entry is None:
                continue
            if entry.kind == "answer" and entry.task in self._snapshots:
                entry = _with_snapshot(entry, self._snapshots.pop(entry.task))
            entries.append(entry)
        if self.store is not None and entries:
            try:
                self.store.add(entries)
            except Exception:  # a bug, not the disk (the store handles that): said, and the node goes on
                log.exception("timeline: recording %d entries failed", len(entries))

    async def query(self, query: TimelineQuery) -> list[Entry]:
        """The matching entries, newest first (ValueError when the timeline cannot be read)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._query, query)

    def _query(self, query: TimelineQuery) -> list[Entry]:
        if self.store is None:
            raise ValueError("the timeline is not open")
        return self.store.query(query)

    async def thumbnails(self, entries: list[Entry], most: int) -> list[bytes]:
        """Up to `most` thumbnails of these entries (newest first), read on the writer thread."""
        names = [entry.thumbnail_file for entry in entries if entry.thumbnail_file][:most]
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._executor, lambda: [read_file(self.root, name) for name in names])
        return [data for data in found if data is not None]

    async def flush(self) -> None:
        """Wait until what was queued before is written."""
        await asyncio.get_running_loop().run_in_executor(self._executor, lambda: None)

    def health(self) -> dict[str, Any]:
        """The `timeline` part of `health`."""
        store = self.store
        if store is None:
            return {"ok": True, "error": None, "opening": True, "dropped": self.dropped}
        report = store.health()
        report["dropped"] += self.dropped
        return report

    def close(self) -> None:
        """Write what waits, then close the file."""
        self._executor.shutdown(wait=True)
        if self.store is not None:
            self.store.close()


def _with_snapshot(entry: Entry, jpeg: bytes) -> Entry:
    return Entry(entry.ts, entry.kind, entry.text, entry.task, entry.camera, entry.payload, jpeg)
