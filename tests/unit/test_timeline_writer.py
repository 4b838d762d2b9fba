"""The timeline's writer thread: what the link spools becomes entries, a task's snapshot joins its answer, and the
event loop never waits on SQLite."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge_agent.config.timeline import TimelineConfig
from edge_agent.timeline import Timeline, TimelineQuery


def test_results_and_snapshots_published_by_the_link_become_linked_entries(tmp_path: Path) -> None:
    image = np.full((240, 320, 3), 128, np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()

    async def scenario() -> None:
        timeline = Timeline(tmp_path, TimelineConfig(thumbnail_px=40))
        now = time.time()
        timeline.published("motion/yard", json.dumps({"ts": now - 2, "camera": "yard", "motion": True}).encode(), 0)
        timeline.published("task/door/snapshot", jpeg, now)
        timeline.published("task/door", json.dumps({"ts": now - 1, "value": "open", "camera": "yard"}).encode(), 0)
        timeline.published("task/door/availability", b"online", now)
        timeline.published("state", b'{"status": "running"}', now)
        await timeline.flush()
        entries = await timeline.query(TimelineQuery())
        assert [(e.kind, e.text) for e in entries] == [("answer", "open"), ("motion", "motion started (area None)")]
        answer = entries[0]
        assert answer.snapshot_file and answer.thumbnail_file and entries[1].snapshot_file is None
        assert (tmp_path / answer.snapshot_file).read_bytes() == jpeg
        (thumb,) = await timeline.thumbnails(entries, 2)
        assert cv2.imdecode(np.frombuffer(thumb, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (30, 40)
        assert timeline.health()["ok"] is True and timeline.health()["entries"] == 2
        timeline.close()

    asyncio.run(scenario())


def test_the_loop_only_queues_while_the_writer_is_busy(tmp_path: Path) -> None:
    async def scenario() -> None:
        timeline = Timeline(tmp_path, TimelineConfig())
        await timeline.flush()
        held = threading.Event()
        timeline._executor.submit(held.wait)  # the writer thread is stuck (a slow disk)
        started = time.monotonic()
        for n in range(2000):
            timeline.published(
                "utterance", json.dumps({"start_s": 0, "end_s": 1, "reason": str(n)}).encode(), time.time()
            )
        assert time.monotonic() - started < 1.0
        held.set()
        await timeline.flush()
        assert timeline.health()["entries"] == 2000 and timeline.health()["dropped"] == 0
        timeline.close()

    asyncio.run(scenario())
