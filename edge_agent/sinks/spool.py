"""Durable outbound spool: results are written to SQLite (WAL) before publishing and removed on PUBACK. It never
stops the node and never loses silently (see `spool_store`). The link hands every write to the spool's own writer
thread (`put_later`, `writer`), in order, so no SQLite write or fsync runs on the event loop."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge_agent.sinks.spool_db import Spooled
from edge_agent.sinks.spool_store import SpoolStore

__all__ = ["Spool", "Spooled"]


class Spool(SpoolStore):
    """The store and the one thread that writes it; used directly (without the thread) it is synchronous."""

    def __init__(
        self,
        path: Path,
        max_messages: int = 10000,
        max_age_s: float = 7 * 86400,
        sync: bool = True,
        max_bytes: int = 100 << 20,
    ) -> None:
        self._writer: ThreadPoolExecutor | None = None
        self._queued, self._queued_lock = 0, threading.Lock()
        super().__init__(path, max_messages, max_age_s, sync, max_bytes)

    @property
    def writer(self) -> ThreadPoolExecutor:
        """The one thread that writes the file: jobs run in the order they were submitted."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-writer")
        return self._writer

    def put_later(self, topic: str, payload: bytes, **options: Any) -> Future[Spooled]:
        """`put` on the writer thread; counted in `depth` from now on."""
        with self._queued_lock:
            self._queued += 1

        def run() -> Spooled:
            try:
                return self.put(topic, payload, **options)
            finally:
                with self._queued_lock:
                    self._queued -= 1

        return self.writer.submit(run)

    def set_note(self, name: str, value: str) -> None:
        """Remember a small piece of state across restarts (written on the writer thread once there is one)."""
        if self._writer is None:
            super().set_note(name, value)
            return
        self._notes = {**self._notes, name: value}
        self._writer.submit(self._save_notes)

    @property
    def depth(self) -> int:
        """How many messages wait (on disk, in memory, or queued for the writer)."""
        return super().depth + self._queued

    def close(self) -> None:
        """Finish the queued writes, then close the store."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        super().close()
