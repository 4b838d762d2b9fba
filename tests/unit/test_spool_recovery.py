"""The spool never stops the node and never loses silently: corrupt files moved aside, a disk that cannot be
written, bounds in bytes, superseded retained messages, and the doctor's integrity check (real SQLite files)."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from edge_agent.doctor.spool import check_spool
from edge_agent.sinks import spool_store
from edge_agent.sinks.spool import Spool


def corrupt_files(path: Path) -> list[Path]:
    """The files moved aside (without their -wal and -shm)."""
    return sorted(p for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm")))


def fill(path: Path, count: int, size: int = 1000) -> None:
    spool = Spool(path, sync=False)
    for n in range(count):
        spool.put("t/old", n.to_bytes(4, "big") + bytes(size), message_id=f"old{n}")
    spool.close()


@pytest.mark.parametrize("kind", ["garbage", "text", "truncated"])
def test_a_corrupt_file_is_moved_aside_once_and_a_fresh_spool_started(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    if kind == "truncated":
        fill(path, 400)
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 2)
    else:
        path.write_bytes(os.urandom(64 * 1024) if kind == "garbage" else b"not a database\n" * 1000)
    original = path.read_bytes()
    assert check_spool(path).verdict == "warn" and "corrupt" in check_spool(path).detail

    with caplog.at_level(logging.INFO, logger="edge_agent.sinks.spool"):
        spool = Spool(path)
    (moved,) = corrupt_files(path)
    assert moved.read_bytes() == original  # kept for inspection, untouched
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"{path} is corrupt" in line and f"moved it aside to {moved}" in line
    assert spool.health()["spool_corrupt"] == 1 and spool.health()["spool_writable"] is True
    assert spool.pending(limit=1000) == []  # a truncated file is unreadable as a whole: kept aside, not read
    stored = spool.put("t/new", b"x")
    spool.close()
    reopened = Spool(path)
    assert reopened.pending(limit=1000)[-1].id == stored.id
    assert reopened.health()["spool_corrupt"] == 1  # the count survives a restart
    assert check_spool(path).verdict == "ok" and len(corrupt_files(path)) == 1


def test_corruption_found_while_running_keeps_what_can_be_read_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    fill(path, 3000)
    spool = Spool(path)  # the integrity check passes
    size = path.stat().st_size
    with path.open("r+b") as file:  # a damaged page in the middle, as a failing SD card does it
        file.seek(size // 2 - size // 2 % 4096)
        file.write(os.urandom(16 * 4096))
    other = sqlite3.connect(path)  # another writer: the spool's page cache is dropped
    other.execute("PRAGMA user_version = 7")
    other.close()
    new = spool.put("t/new", b"kept")
    waiting = spool.pending(limit=5000)
    health = spool.health()
    assert health["spool_corrupt"] == 1 and len(corrupt_files(path)) == 1
    assert waiting[-1].id == new.id  # nothing that was handed over is lost
    old = [m for m in waiting if m.topic == "t/old"]
    assert old and len(old) + health["spool_dropped"] == 3000  # every old one delivered or counted
    assert [m.seq for m in waiting] == sorted(m.seq for m in waiting)
    spool.close()


def test_an_unwritable_file_keeps_results_in_memory_until_it_can_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    path.mkdir()  # SQLite cannot open a directory: like a read-only or missing mount
    monkeypatch.setattr(spool_store, "RETRY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="edge_agent.sinks.spool"):
        spool = Spool(path, max_messages=50)
        changes: list[bool] = []
        spool.on_change = lambda: changes.append(spool.error is None)
        stored = [spool.put("t", str(n).encode()) for n in range(60)]
        health = spool.health()
        assert health["spool_writable"] is False and "cannot open" in str(health["spool_error"])
        assert health["spool_memory"] == 50 and health["spool_dropped"] == 10  # bounded, oldest dropped, counted
        assert [m.payload for m in spool.pending(limit=100)] == [str(n).encode() for n in range(10, 60)]
        spool.ack(stored[10].seq, stored[11].seq)
        shutil.rmtree(path)  # the disk is back
        last = spool.put("t", b"last")
    assert spool.health()["spool_writable"] is True and spool.health()["spool_memory"] == 0
    assert changes == [True] and spool.depth == 49
    spool.close()
    reopened = Spool(path)
    assert [m.payload for m in reopened.pending(limit=100)][-2:] == [b"59", b"last"]
    assert reopened.pending(limit=100)[-1].seq == last.seq and reopened.dropped == 10
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot open" in m for m in messages) == 1  # one line, not one per result
    assert sum("memory queue is full" in m for m in messages) == 1
    assert sum("can be written again" in m or "is written again" in m for m in messages) == 1


def test_the_byte_bound_drops_the_oldest_once_logged_per_episode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool.db", max_bytes=10_000)
    with caplog.at_level(logging.WARNING, logger="edge_agent.sinks.spool"):
        stored = [spool.put("t", bytes(1000)) for _ in range(25)]
        assert spool.depth == 10 and spool.payload_bytes == 10_000 and spool.dropped == 15
        spool.ack(*(m.seq for m in stored[15:]))  # delivered: the episode ends
        for _ in range(12):
            spool.put("t", bytes(1000))
    assert spool.dropped == 17 and spool.pending(limit=100)[0].seq == stored[-1].seq + 3
    assert sum("the spool is full" in r.getMessage() for r in caplog.records) == 2
    big = spool.put("t", bytes(50_000))  # larger than the bound: the newest is never dropped
    assert [m.id for m in spool.pending(limit=100)] == [big.id]


def test_a_newer_retained_message_replaces_the_waiting_ones_on_its_topic(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.put("task/door/snapshot", b"jpeg1", retain=True)
    spool.put("task/door", b"answer1", retain=True)
    event = spool.put("event", b"e1")
    spool.put("task/door/snapshot", b"jpeg2", retain=True)
    spool.put("task/door", b"answer2", retain=True)
    spool.put("task/voice", b"not retained")
    spool.put("task/voice", b"not retained either")
    assert [m.payload for m in spool.pending()] == [
        b"e1",
        b"jpeg2",
        b"answer2",
        b"not retained",
        b"not retained either",
    ]
    assert spool.dropped == 0 and spool.depth == 5 and spool.pending()[0].id == event.id


def test_doctor_says_ok_for_a_sound_spool_and_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    assert check_spool(path).verdict == "ok" and "not created yet" in check_spool(path).detail
    fill(path, 3)
    check = check_spool(path)
    assert check.verdict == "ok" and "integrity ok; 3 result(s) waiting" in check.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool.db"]  # read-only: no -wal/-shm left behind
