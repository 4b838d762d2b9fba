"""The link never writes the spool on the event loop: a slow or locked disk does not hold up the node."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from edge_agent.config import MqttConfig
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.sinks.spool import Spool


async def publish_while_the_file_is_locked(path: Path) -> None:
    spool = Spool(path)
    link = MqttLink(MqttConfig(client_id="writer-test"), "writer", spool)
    threads: set[str] = set()
    put = spool.put

    def recording_put(*args: object, **kwargs: object) -> object:
        threads.add(threading.current_thread().name)
        return put(*args, **kwargs)  # type: ignore[arg-type]

    spool.put = recording_put  # type: ignore[method-assign]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the file: each write waits for it
    try:
        started = time.monotonic()
        futures = [link.publish_result("result", {"n": n}) for n in range(5)]
        link.spool.set_note("ha_components", '{"a": "sensor"}')
        assert time.monotonic() - started < 0.5  # the loop did not wait for the disk
        assert spool.depth == 5  # counted from the moment they were handed over
        await asyncio.sleep(0.3)
    finally:
        other.execute("ROLLBACK")
        other.close()
    stored = [await asyncio.wrap_future(future) for future in futures]
    assert [m.seq for m in stored] == sorted(m.seq for m in stored)  # in the order they were published
    assert threads == {"spool-writer_0"}
    spool.close()
    reopened = Spool(path)
    assert [m.id for m in reopened.pending()] == [m.id for m in stored]
    assert reopened.note("ha_components") == '{"a": "sensor"}'


def test_results_are_written_in_order_on_the_writer_thread(tmp_path: Path) -> None:
    asyncio.run(publish_while_the_file_is_locked(tmp_path / "spool.db"))
