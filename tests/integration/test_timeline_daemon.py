"""The timeline end to end: the real daemon (tiny model, file camera, real mosquitto) records motion, answers and
asks with their times; `timeline/query` over MQTT, `GET /api/timeline` and `edge-agent timeline` return them, and
a question is answered from them."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest
from rig.broker import Mosquitto, free_port
from rig.daemon import Daemon
from rig.subscriber import Subscriber
from test_mqtt_ask import Requester

from edge_agent.timeline import TimelineQuery
from edge_agent.timeline.store import read_entries

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
BASE = "edge_agent/tl1"
TOKEN = "timeline-secret-token-1"


def timeline_config(broker: Mosquitto, tmp_path: Path, camera: Path, http_port: int, device: str = "tl1") -> str:
    return f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}}}
        model: {{path: {MODEL}, max_new_tokens: 8, image_budget: 70}}
        cameras:
          - {{name: yard, source: {camera}, fps: 10}}
        tasks:
          - {{kind: watch, name: door, camera: yard, question: "Is the door open?", cooldown_s: 1, snapshot: true}}
        timeline: {{path: {tmp_path / "timeline"}, thumbnail_px: 48}}
        http: {{enabled: true, port: {http_port}, token: {TOKEN}}}
        health: {{interval_s: 0.5}}
        """


def payloads(subscriber: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(body) for body in subscriber.on(topic)]


def query(requester: Requester, body: dict[str, Any] | bytes, correlation: bytes) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    requester.ask(f"{BASE}/timeline/query", data, correlation)
    requester.wait(lambda: correlation in requester.replies, timeout_s=60)
    return requester.replies[correlation][0]


def http_get(port: int, params: str, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/timeline?{params}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def timeline_cli(config: Path, *options: str) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "edge_agent", "timeline", "-c", str(config), *options]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return list(json.loads(result.stdout))


def check_recorded(subscriber: Subscriber, requester: Requester, tmp_path: Path) -> list[dict[str, Any]]:
    """Motion and answers published over MQTT are in the timeline, at the times they were published."""
    published_motion = {round(p["ts"], 3): p["motion"] for p in payloads(subscriber, f"{BASE}/motion/yard")}
    published_door = {round(p["ts"], 3): p["value"] for p in payloads(subscriber, f"{BASE}/task/door")}
    reply = query(requester, {"id": "q-1", "kind": ["motion", "answer"], "camera": "yard"}, b"t-1")
    assert reply["status"] == "ok" and reply["id"] == "q-1", reply
    entries = reply["entries"]
    assert [e["ts"] for e in entries] == sorted((e["ts"] for e in entries), reverse=True)  # newest first
    motion = {e["ts"]: e for e in entries if e["kind"] == "motion"}
    door = {e["ts"]: e for e in entries if e["kind"] == "answer"}
    assert set(published_motion) <= set(motion) and set(published_door) <= set(door)
    for ts, moving in published_motion.items():
        assert motion[ts]["payload"]["motion"] is moving and motion[ts]["text"].startswith("motion st")
    for ts, value in published_door.items():
        assert door[ts]["task"] == "door" and door[ts]["text"] == json.dumps(value)
    with_snapshot = [e for e in door.values() if e["snapshot"]]
    assert with_snapshot, "the snapshot published with an answer is kept with its entry"
    thumb = cv2.imread(str(tmp_path / "timeline" / with_snapshot[0]["thumbnail"]))
    assert thumb is not None and max(thumb.shape[:2]) <= 48
    return entries


def check_last_event(subscriber: Subscriber, entries: list[dict[str, Any]]) -> None:
    """Home Assistant's "last event" sensor of the camera: its newest answer or motion start, retained."""
    newest = next(e for e in entries if e["kind"] == "answer" or e["payload"].get("motion") is True)
    topic = f"{BASE}/camera/yard/last_event"
    subscriber.wait_for(lambda _: any(p["ts"] == newest["ts"] for p in payloads(subscriber, topic)))
    last = next(p for p in payloads(subscriber, topic) if p["ts"] == newest["ts"])
    assert last["camera"] == "yard" and last["kind"] == newest["kind"] and last["summary"], last
    if newest["kind"] == "answer":
        assert last["summary"] == f"door: {newest['text']}"


def test_the_daemon_records_events_and_answers_timeline_queries(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, tmp_path: Path, video_file: Path
) -> None:
    port = free_port()
    config = write_config(timeline_config(mosquitto, tmp_path, video_file, port))
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{BASE}/#"])
    requester = Requester(mosquitto)
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("ready:")
        subscriber.wait_for(lambda _: bool(subscriber.on(f"{BASE}/motion/yard")), timeout_s=60)
        subscriber.wait_for(lambda _: bool(subscriber.on(f"{BASE}/task/door")), timeout_s=60)
        entries = check_recorded(subscriber, requester, tmp_path)
        check_last_event(subscriber, entries)
        # a question answered from the timeline, with a thumbnail shown (the tiny model can see)
        asked = {"id": "q-2", "question": "When was motion last seen?", "since": "1h", "images": True}
        reply = query(requester, asked, b"t-2")
        assert reply["status"] == "ok" and isinstance(reply["answer"], str), reply
        assert reply["entries_in_prompt"] >= 1 and reply["images"] >= 1 and reply["model"] == "tiny-gemma4 (q4)"
        # bad input: an error reply each, and the node stays up
        assert query(requester, b"{not json", b"t-3")["status"] == "error"
        bad = query(requester, {"id": "q-4", "since": "last tuesday"}, b"t-4")
        assert bad["status"] == "error" and bad["id"] == "q-4" and "since" in bad["error"]
        assert "unknown field" in query(requester, {"sql": "DROP TABLE entries"}, b"t-5")["error"]
        # an ask is recorded too
        requester.ask(f"{BASE}/ask", json.dumps({"question": "Anyone there?"}).encode(), b"a-1")
        requester.wait(lambda: b"a-1" in requester.replies, timeout_s=60)
        asks = query(requester, {"kind": ["ask"]}, b"t-6")["entries"]
        assert asks and asks[0]["payload"]["question"] == "Anyone there?"
        # HTTP: the same entries behind the same token
        assert http_get(port, "kind=motion", token=None)[0] == 401
        status, body = http_get(port, "kind=motion&camera=yard&limit=3")
        assert status == 200 and body["count"] == len(body["entries"]) <= 3
        assert all(e["kind"] == "motion" for e in body["entries"])
        assert http_get(port, "since=whenever")[0] == 400
        status, answered = http_get(port, "question=What+moved%3F&since=1h&kind=motion")
        assert status == 200 and isinstance(answered["answer"], str) and answered["entries_in_prompt"] >= 1
        assert daemon.alive
        # the CLI reads the file while the daemon writes it (WAL)
        motion_ts = {e["ts"] for e in entries if e["kind"] == "motion"}
        assert motion_ts <= {e["ts"] for e in timeline_cli(config, "--kind", "motion", "--json")}

        def timeline_health() -> dict[str, Any]:
            return dict(json.loads(subscriber.on(f"{BASE}/health")[-1])["timeline"])

        subscriber.wait_for(lambda _: timeline_health()["entries"] >= len(entries) + 1)  # the ask's entry too
        assert timeline_health()["ok"] is True and timeline_health()["dropped"] == 0
    finally:
        assert daemon.stop() == 0
        print("\n".join(line for _, line in daemon.lines[-60:]))  # shown when the test fails
        requester.close()
        subscriber.close()
    # the CLI reads the file the daemon wrote
    assert motion_ts <= {e["ts"] for e in timeline_cli(config, "--kind", "motion", "--json")}
    table = subprocess.run(
        [sys.executable, "-m", "edge_agent", "timeline", "-c", str(config), "--task", "door", "--since", "1h"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert table.stdout.count("answer") >= 1 and "door" in table.stdout


@pytest.mark.parametrize("corruption", [b"not a database" * 64])
def test_a_damaged_timeline_file_does_not_stop_the_daemon(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, tmp_path: Path, video_file: Path, corruption: bytes
) -> None:
    (tmp_path / "timeline").mkdir()
    (tmp_path / "timeline" / "timeline.db").write_bytes(corruption)
    config = write_config(timeline_config(mosquitto, tmp_path, video_file, free_port(), device="tl2"))
    subscriber = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/tl2/motion/#"])
    daemon = Daemon(config)
    try:
        (line,) = [line for _, line in daemon.wait_for_lines("is damaged")]
        assert "timeline.db.corrupt-" in line
        subscriber.wait_for(lambda _: bool(subscriber.on("edge_agent/tl2/motion/yard")), timeout_s=60)
        assert daemon.alive
    finally:
        assert daemon.stop() == 0
        subscriber.close()
    (aside,) = (tmp_path / "timeline").glob("timeline.db.corrupt-*")
    assert aside.read_bytes() == corruption
    assert read_entries(tmp_path / "timeline" / "timeline.db", TimelineQuery(kind=["motion"]), 10)
