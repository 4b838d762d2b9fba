"""The timeline store on a real SQLite file: retention under a flood, damaged and refusing files, queries."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.config.timeline import TimelineConfig
from edge_agent.timeline import Entry, TimelineQuery, TimelineStore, entry_from_result, parse_time
from edge_agent.timeline.store import read_entries


def disk_bytes(root: Path) -> int:
    """Every file under the timeline directory, measured by the file system (not the store's own sums)."""
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def jpeg(seed: int, size: int = 320) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (size * 3 // 4, size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def event(ts: float, n: int, **fields: object) -> Entry:
    text = f"event {n} " + "x" * (n % 200)
    return Entry(ts, str(fields.get("kind", "answer")), text, "door", "yard", {"n": n}, fields.get("snapshot"))  # type: ignore[arg-type]


def test_a_flood_of_10000_events_stays_within_the_byte_bound_and_keeps_the_newest(tmp_path: Path) -> None:
    config = TimelineConfig(max_mb=1, retention_every=200, thumbnail_px=64)
    store = TimelineStore(tmp_path, config)
    start, worst = time.time() - 10000, 0
    for batch in range(200):
        entries = [
            event(start + n, n, snapshot=jpeg(n) if n % 97 == 0 else None) for n in range(batch * 50, batch * 50 + 50)
        ]
        store.add(entries)
        worst = max(worst, disk_bytes(tmp_path))
    assert worst <= 2**20, f"the timeline took {worst} bytes, more than its 1 MB"
    newest = store.query(TimelineQuery(limit=1))[0]
    assert newest.payload == {"n": 9999}
    assert 100 < store.entries < 10000 and store.expired == 10000 - store.entries
    kept = {e.snapshot_file for e in store.query(TimelineQuery()) if e.snapshot_file}
    kept |= {e.thumbnail_file for e in store.query(TimelineQuery()) if e.thumbnail_file}
    on_disk = {str(p.relative_to(tmp_path)) for p in (tmp_path / "snapshots").rglob("*.jpg")}
    assert on_disk == kept and kept, "snapshots of deleted entries must be deleted with them"
    assert store.health()["ok"] is True and store.health()["dropped"] == 0


def test_entries_older_than_max_age_go_at_start_and_at_the_insert_cadence(tmp_path: Path) -> None:
    now = [1_000_000.0]
    config = TimelineConfig(max_age_days=1, retention_every=10)
    store = TimelineStore(tmp_path, config, clock=lambda: now[0])
    store.add([event(now[0] - 2 * 86400, 0), event(now[0] - 3600, 1)])
    store.enforce()
    assert [e.payload["n"] for e in store.query(TimelineQuery())] == [1]
    now[0] += 86400  # a day later, the second is a day and an hour old
    store.add([event(now[0] - n, 100 + n) for n in range(10)])
    assert sorted(e.payload["n"] for e in store.query(TimelineQuery())) == list(range(100, 110))
    store.close()
    now[0] += 2 * 86400
    reopened = TimelineStore(tmp_path, config, clock=lambda: now[0])
    assert reopened.query(TimelineQuery()) == [] and reopened.entries == 0


def test_a_damaged_file_is_kept_aside_with_one_line_and_a_new_timeline_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "timeline.db").write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.INFO, logger="edge_agent.timeline"):
        store = TimelineStore(tmp_path, TimelineConfig())
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "is damaged" in line and "timeline.db.corrupt-" in line
    (aside,) = tmp_path.glob("timeline.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    store.add([event(time.time(), 1)])
    assert [e.text for e in store.query(TimelineQuery())] == ["event 1 x"]
    assert store.health()["ok"] is True


def test_a_directory_that_cannot_be_used_marks_the_timeline_failed_and_drops_entries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the directory should be")
    with caplog.at_level(logging.INFO, logger="edge_agent.timeline"):
        store = TimelineStore(blocked, TimelineConfig())
        store.add([event(time.time(), n) for n in range(5)])
        store.add([event(time.time(), n) for n in range(5)])
    health = store.health()
    assert health["ok"] is False and "cannot open" in health["error"] and health["dropped"] == 10
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    with pytest.raises(ValueError, match="not available"):
        store.query(TimelineQuery())


def test_a_full_disk_costs_the_refused_entries_one_line_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = TimelineStore(tmp_path, TimelineConfig(retention_every=100_000, retention_interval_s=86400))
    assert store.db is not None
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "database or disk is full"
    with caplog.at_level(logging.INFO, logger="edge_agent.timeline"):
        for n in range(20):
            store.add([event(time.time(), n) for _ in range(20)])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "full" in errors[0], errors
    assert store.health()["ok"] is False and store.health()["dropped"] > 0
    store.db.execute("PRAGMA max_page_count=1000000")
    store.add([event(time.time(), 999)])
    assert store.health()["ok"] is True
    assert store.query(TimelineQuery(limit=1))[0].payload == {"n": 999}


def test_a_snapshot_that_cannot_be_written_keeps_its_entry_and_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = TimelineStore(tmp_path, TimelineConfig())
    (tmp_path / "snapshots").write_text("a file where the snapshots' directory should be")
    with caplog.at_level(logging.INFO, logger="edge_agent.timeline"):
        for n in range(5):
            store.add([event(time.time(), n, snapshot=jpeg(n))])
            store.add([event(time.time(), 100 + n)])  # entries without a snapshot do not hide the problem
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "snapshot" in errors[0], errors
        assert store.health()["ok"] is False and len(store.query(TimelineQuery())) == 10
        assert all(e.snapshot_file is None for e in store.query(TimelineQuery()))
        (tmp_path / "snapshots").unlink()
        store.add([event(time.time(), 9, snapshot=jpeg(9))])
    assert store.health()["ok"] is True and store.query(TimelineQuery(limit=1))[0].snapshot_file
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_queries_filter_by_time_kind_task_camera_and_text(tmp_path: Path) -> None:
    now = time.time()
    store = TimelineStore(tmp_path, TimelineConfig())
    store.add(
        [
            Entry(now - 7200, "motion", "motion started (area 0.2)", None, "yard"),
            Entry(now - 1800, "answer", "true", "door", "yard", {"value": True}),
            Entry(now - 600, "answer", "100%_open", "garage", "drive", {"value": "100%_open"}),
            Entry(now - 60, "tool_call", "light ok: {}", "voice", None),
        ]
    )

    def texts(**filters: object) -> list[str]:
        return [entry.text for entry in store.query(TimelineQuery.model_validate(filters), now=now)]

    assert texts() == ["light ok: {}", "100%_open", "true", "motion started (area 0.2)"]
    assert texts(since="1h") == ["light ok: {}", "100%_open", "true"]
    assert texts(since="1h", until="5m") == ["100%_open", "true"]
    assert texts(kind="answer,motion", camera="yard") == ["true", "motion started (area 0.2)"]
    assert texts(task="garage") == ["100%_open"]
    assert texts(grep="%_") == ["100%_open"] and texts(grep="0%x") == []
    assert texts(grep="MOTION") == ["motion started (area 0.2)"]
    assert texts(limit=2) == ["light ok: {}", "100%_open"]
    store.close()
    direct = read_entries(tmp_path / "timeline.db", TimelineQuery(kind=["answer"]), 10)
    assert [e.task for e in direct] == ["garage", "door"]


def test_bad_filters_are_refused_with_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="cannot read 'yesterday'"):
        TimelineQuery(since="yesterday")
    with pytest.raises(ValueError, match="unknown kind 'door'"):
        TimelineQuery(kind="door")
    with pytest.raises(ValueError, match="extra"):
        TimelineQuery.model_validate({"sql": "DROP TABLE entries"})
    assert parse_time("90s", now=1000.0) == 910.0 and parse_time("2d", now=200000.0) == 200000.0 - 172800
    assert parse_time("1970-01-01T00:01:00+00:00") == 60.0


def test_published_results_become_entries_by_topic() -> None:
    def entry(suffix: str, body: dict[str, object]) -> Entry | None:
        return entry_from_result(suffix, json.dumps({"ts": 5.0, **body}).encode(), 9.0)

    answer = entry("task/door", {"task": "door", "value": True, "camera": "yard", "trigger": "motion"})
    assert answer is not None and (answer.kind, answer.text, answer.task, answer.camera, answer.ts) == (
        "answer",
        "true",
        "door",
        "yard",
        5.0,
    )
    motion = entry("motion/yard", {"camera": "yard", "motion": True, "area": 0.25})
    assert motion is not None and (motion.kind, motion.camera, motion.text) == (
        "motion",
        "yard",
        "motion started (area 0.25)",
    )
    voice = entry(
        "task/v", {"trigger": "voice", "transcript": "lights on", "answer": "done", "tool_calls": [{"tool": "light"}]}
    )
    assert voice is not None and voice.kind == "voice" and "lights on" in voice.text and "light" in voice.text
    audit = entry("tools/audit", {"task": "v", "tool": "light", "status": "ok", "arguments": {"state": "ON"}})
    assert audit is not None and audit.kind == "tool_call" and audit.task == "v"
    assert entry("state", {"status": "running"}) is None and entry("task/door/availability", {}) is None
    assert entry_from_result("task/door", b"{not json", 1.0) is None
    assert entry_from_result("motion/yard", b"[1, 2]", 1.0) is None
    assert sqlite3.sqlite_version  # the stdlib module the store runs on
