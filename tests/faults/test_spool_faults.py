"""The spool never stops the node and never loses silently: storage faults injected into the real daemon (real
mosquitto, real SQLite files on real filesystems, the spool's writer thread). Corrupt files at start and while
running, a read-only directory, a full disk, the byte bound, and retained snapshots over an outage.

The full-disk and read-only faults use small tmpfs mounts, so these tests run as root (as the rig does)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber

from edge_agent.sinks.spool import Spool

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
VIDEO = REPO / "deploy" / "demo" / "garage.mp4"
MOTION = "camera yard: motion "  # one log line for each motion result the node publishes


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Factory: a tmpfs of the given size (e.g. '2m'), unmounted after the test."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"disk{len(mounts)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
        assert done.returncode == 0, f"cannot mount a tmpfs (run the fault tests as root): {done.stderr!r}"
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def node_config(broker: Mosquitto, spool: Path, device: str, *, mqtt: str = "", body: str = "") -> str:
    """A node without a model (an empty directory: it runs and answers `error: no model loaded`)."""
    no_model = spool.parent.parent / f"no-model-{device}"
    no_model.mkdir(exist_ok=True)
    return f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {spool}, discovery: false, reconnect_max_s: 1{mqtt}}}
        model: {{path: {no_model}}}
        health: {{interval_s: 0.5}}
        {body}
        """


CAMERA = f"cameras: [{{name: yard, source: {VIDEO}, fps: 5}}]"


def last(watch: Subscriber, topic: str) -> dict[str, Any]:
    payloads = [body for body in watch.on(topic) if body]
    return json.loads(payloads[-1]) if payloads else {}


def wait_health(watch: Subscriber, base: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 30) -> None:
    watch.wait_for(lambda _: check(last(watch, f"{base}/health")), timeout_s=timeout_s)


def ask(watch: Subscriber, base: str, *questions: str) -> None:
    """Home Assistant's text entity: each question comes back as one spooled `event`."""
    deadline = time.monotonic() + 30
    while not watch.client.is_connected():  # e.g. just after the broker came back
        assert time.monotonic() < deadline, "the test's client did not reconnect"
        time.sleep(0.1)
    for question in questions:
        watch.client.publish(f"{base}/ask/text", question, qos=1).wait_for_publish(10)


def answered(watch: Subscriber, base: str) -> set[str]:
    return {json.loads(body)["question"] for body in watch.on(f"{base}/event")}


def motion_ids(watch: Subscriber, base: str) -> set[str]:
    return {json.loads(body)["id"] for body in watch.on(f"{base}/motion/yard")}


def online(watch: Subscriber, base: str) -> None:
    watch.wait_for(lambda _: watch.on(f"{base}/availability")[-1:] == [b"online"], timeout_s=30)


def finish(daemon: Daemon, *clients: Subscriber) -> int:
    code = daemon.stop()
    print("\n".join(line for _, line in daemon.lines[-40:]))  # shown when the test fails
    for client in clients:
        client.close()
    assert not any("Traceback" in line for _, line in daemon.lines)
    return code


def moved_aside(spool: Path) -> list[Path]:
    return sorted(p for p in spool.parent.glob(f"{spool.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm")))


def write_corrupt(spool: Path, kind: str) -> None:
    if kind == "garbage":
        spool.write_bytes(os.urandom(100_000))
    elif kind == "text":
        spool.write_text("this is not a database\n" * 2000)
    else:  # a real spool with waiting results, cut in half (a write lost in a power cut)
        fill(spool, "edge_agent/other/old", 400, 1000)
        with spool.open("r+b") as file:
            file.truncate(spool.stat().st_size // 2)


def fill(spool: Path, topic: str, count: int, size: int) -> None:
    """Results left waiting by an earlier run: {"n": n} padded to `size` bytes."""
    stored = Spool(spool, sync=False)
    for n in range(count):
        body = json.dumps({"id": f"old{n}", "n": n, "pad": "x" * size}).encode()
        stored.put(topic, body, message_id=f"old{n}")
    stored.close()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "text"])
def test_a_corrupt_spool_file_is_moved_aside_and_the_node_delivers(
    kind: str, mosquitto: Mosquitto, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    device, spool = f"corrupt-{kind}", tmp_path / "state" / "spool.db"
    base = f"edge_agent/{device}"
    spool.parent.mkdir()
    write_corrupt(spool, kind)
    original = spool.read_bytes()
    config = write_config(node_config(mosquitto, spool, device))
    if kind == "garbage":  # `doctor` runs the same integrity check, read-only
        done = subprocess.run(
            [sys.executable, "-m", "edge_agent", "doctor", "-c", str(config), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        (check,) = [c for c in json.loads(done.stdout) if c["name"] == "spool"]
        assert check["verdict"] == "warn" and f"{spool}: corrupt (file is not a database)" in check["detail"]
        assert spool.read_bytes() == original and not moved_aside(spool)

    watch = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    daemon = Daemon(config)
    try:
        online(watch, base)
        (moved,) = moved_aside(spool)
        (line,) = daemon.wait_for_lines("is corrupt", timeout_s=1)  # one line naming both files
        assert f"spool: {spool} is corrupt (" in line[1] and f"moved it aside to {moved}" in line[1]
        assert moved.read_bytes() == original  # kept for inspection, untouched
        ask(watch, base, "q0", "q1", "q2")
        watch.wait_for(lambda _: answered(watch, base) == {"q0", "q1", "q2"})
        wait_health(watch, base, lambda h: h.get("spool_corrupt") == 1 and h["spool_depth"] == 0)
        assert last(watch, f"{base}/health")["spool_writable"] is True
        assert last(watch, f"{base}/state")["spool"] == {"path": str(spool), "writable": True, "error": None}
        assert daemon.alive
    finally:
        code = finish(daemon, watch)
    assert code == 0


def test_a_read_only_spool_directory_keeps_results_in_memory_and_says_so(
    mosquitto: Mosquitto, write_config: Callable[..., Path], small_disk: Callable[[str], Path]
) -> None:
    device = "read-only"
    base, disk = f"edge_agent/{device}", small_disk("4m")
    spool = disk / "spool.db"
    fill(spool, f"{base}/old", 2, 10)  # results of an earlier run stay on the file for later
    remount(disk, "ro")
    watch = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    daemon = Daemon(write_config(node_config(mosquitto, spool, device)))
    try:
        online(watch, base)
        ask(watch, base, "q0", "q1", "q2")
        watch.wait_for(lambda _: answered(watch, base) == {"q0", "q1", "q2"})  # delivered from memory
        (line,) = daemon.wait_for_lines(f"spool: cannot open {spool}", timeout_s=1)
        assert "results wait in memory" in line[1]
        wait_health(watch, base, lambda h: h.get("spool_writable") is False and h["spool_depth"] == 0)
        health = last(watch, f"{base}/health")
        assert f"cannot open {spool}: unable to open database file" == health["spool_error"]
        assert health["spool_write_errors"] >= 1 and health["spool_dropped"] == 0
        assert last(watch, f"{base}/state")["spool"]["writable"] is False

        remount(disk, "rw")  # writable again: the next result goes to disk, and `state` says so
        time.sleep(5)  # the spool tries the file again at most every 5 s
        ask(watch, base, "q3")
        daemon.wait_for_lines(f"spool: {spool} is written again", timeout_s=30)
        watch.wait_for(lambda _: "q3" in answered(watch, base) and last(watch, f"{base}/state")["spool"]["writable"])
        assert len(watch.on(f"{base}/old")) == 2  # the earlier run's results, delivered once the file opened
        assert len(daemon.wait_for_lines("spool: cannot open", timeout_s=1)) == 1
    finally:
        code = finish(daemon, watch)
    assert code == 0


def test_a_page_corrupted_while_running_is_moved_aside_and_nothing_handed_over_is_lost(
    make_broker: Callable[..., Mosquitto], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    device, spool = "corrupt-live", tmp_path / "state" / "spool.db"
    base = f"edge_agent/{device}"
    spool.parent.mkdir()
    broker = make_broker("max_queued_messages 0\n", persistent=True)  # keeps all 3000 for the test's client
    watch = Subscriber(broker.host, broker.port, [f"{base}/#"], session="corrupt-live-watch")
    fill(spool, f"{base}/old", 3000, 1000)  # an outage's worth of results, waiting
    broker.stop()
    daemon = Daemon(write_config(node_config(broker, spool, device, mqtt=", keepalive: 5", body=CAMERA)))
    try:
        daemon.wait_for_lines(MOTION)  # running, with the spool open and checked
        size = spool.stat().st_size
        with spool.open("r+b") as file:  # damaged pages in the middle of the file, as a failing SD card does
            file.seek(size // 2 - size // 2 % 4096)
            file.write(os.urandom(16 * 4096))
        other = sqlite3.connect(spool)  # another writer: the daemon's page cache no longer hides the damage
        other.execute("PRAGMA user_version = 7")
        other.close()
        daemon.wait_for_lines(MOTION, count=len(daemon.wait_for_lines(MOTION)) + 1)  # a write after the damage
        broker.start()
        (line,) = daemon.wait_for_lines("is corrupt", timeout_s=60)
        assert f"spool: {spool} is corrupt (database disk image is malformed)" in line[1]
        assert f"moved it aside to {moved_aside(spool)[0]}" in line[1]
        ask(watch, base, "q0", "q1")
        produced = len(daemon.wait_for_lines(MOTION))
        watch.wait_for(lambda _: answered(watch, base) == {"q0", "q1"} and len(motion_ids(watch, base)) >= produced)
        wait_health(watch, base, lambda h: h.get("spool_corrupt") == 1 and h["spool_depth"] == 0, timeout_s=60)
        old = {json.loads(body)["n"] for body in watch.on(f"{base}/old")}
        dropped = last(watch, f"{base}/health")["spool_dropped"]
        assert old and len(old) + dropped == 3000, (len(old), dropped)  # each one delivered, or counted as lost
        assert daemon.alive
    finally:
        code = finish(daemon, watch)
    assert code == 0


def test_a_full_disk_keeps_results_in_memory_until_space_is_back(
    make_broker: Callable[..., Mosquitto], write_config: Callable[..., Path], small_disk: Callable[[str], Path]
) -> None:
    device = "full-disk"
    base, disk = f"edge_agent/{device}", small_disk("2m")
    spool = disk / "spool.db"
    broker = make_broker(persistent=True)
    watch = Subscriber(broker.host, broker.port, [f"{base}/#"], session="full-disk-watch")
    daemon = Daemon(write_config(node_config(broker, spool, device, mqtt=", keepalive: 5", body=CAMERA)))
    filler = disk / "filler"
    try:
        online(watch, base)
        with filler.open("wb", buffering=0) as file, pytest.raises(OSError):  # ENOSPC: the disk is full
            while True:
                file.write(b"\0" * 65536)
        daemon.wait_for_lines(f"spool: cannot write {spool} (database or disk is full)", timeout_s=60)
        wait_health(watch, base, lambda h: h.get("spool_writable") is False and h["spool_write_errors"] >= 1)
        assert last(watch, f"{base}/state")["spool"]["writable"] is False

        broker.stop()  # an outage while the disk is full: results wait in memory
        during = len(daemon.wait_for_lines(MOTION))
        daemon.wait_for_lines(MOTION, count=during + 2, timeout_s=60)
        filler.unlink()  # space is back: what waits in memory goes to disk with the next result
        (line,) = daemon.wait_for_lines(f"spool: {spool} is written again", timeout_s=60)
        kept = int(line[1].split("with the ")[1].split(" result(s)")[0])
        assert kept >= 2  # the results made during the outage, from memory to disk
        broker.start()
        produced = len(daemon.wait_for_lines(MOTION))
        watch.wait_for(lambda _: len(motion_ids(watch, base)) >= produced, timeout_s=60)
        wait_health(watch, base, lambda h: h.get("spool_writable") is True and h["spool_memory"] == 0)
        assert last(watch, f"{base}/health")["spool_dropped"] == 0
        assert len(daemon.wait_for_lines("spool: cannot write", timeout_s=1)) == 1  # one line, not one per result
        assert daemon.alive
    finally:
        code = finish(daemon, watch)
    assert code == 0


def test_the_byte_bound_drops_the_oldest_and_counts_them(
    mosquitto: Mosquitto, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    device, spool = "byte-bound", tmp_path / "state" / "spool.db"
    base = f"edge_agent/{device}"
    spool.parent.mkdir()
    fill(spool, f"{base}/old", 40, 10_000)  # 400 kB waiting (snapshots are large)
    watch = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    daemon = Daemon(write_config(node_config(mosquitto, spool, device, mqtt=", spool_max_mb: 0.1")))
    try:
        online(watch, base)
        ask(watch, base, "q0")
        watch.wait_for(lambda _: "q0" in answered(watch, base))
        wait_health(watch, base, lambda h: h.get("spool_depth") == 0)
        old = sorted(json.loads(body)["n"] for body in watch.on(f"{base}/old"))
        dropped = last(watch, f"{base}/health")["spool_dropped"]
        assert old == list(range(40 - len(old), 40)) and 0 < len(old) < 11  # the newest 100 kB
        assert dropped == 40 - len(old)
        (line,) = daemon.wait_for_lines("spool: dropping the oldest results: the spool is full", timeout_s=1)
        assert "mqtt.spool_max_mb" in line[1]
    finally:
        code = finish(daemon, watch)
    assert code == 0


def spooled(spool: Path, topic: str) -> list[bytes]:
    """What the running daemon's spool holds for `topic` (read-only, beside the daemon)."""
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
    try:
        return [bytes(row[0]) for row in db.execute("SELECT payload FROM messages WHERE topic = ?", (topic,))]
    finally:
        db.close()


def test_an_outage_replays_only_the_newest_retained_snapshot(
    make_broker: Callable[..., Mosquitto], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    device, spool = "retained", tmp_path / "state" / "spool.db"
    base = f"edge_agent/{device}"
    spool.parent.mkdir()
    broker = make_broker(persistent=True)
    watch = Subscriber(broker.host, broker.port, [f"{base}/task/#"], session="retained-watch")
    task = "{kind: watch, name: door, camera: yard, question: 'Is the door open?', on_motion: false, interval_s: 1"
    config = f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {spool}, discovery: false, reconnect_max_s: 1}}
        model: {{path: {MODEL}, max_new_tokens: 8, image_budget: 70}}
        {CAMERA}
        tasks: [{task}, cooldown_s: 0, snapshot: true}}]
        """
    daemon = Daemon(write_config(config))
    answers = "task door (timer)"
    try:
        daemon.wait_for_lines(answers, timeout_s=120)
        watch.wait_for(lambda _: bool(watch.on(f"{base}/task/door")), timeout_s=30)
        broker.stop()
        stopped = time.time()
        before = len(daemon.wait_for_lines(answers))
        daemon.wait_for_lines(answers, count=before + 3, timeout_s=120)
        (answer,) = spooled(spool, f"{base}/task/door")  # 3+ answers made, one waits: the newest
        assert len(spooled(spool, f"{base}/task/door/snapshot")) == 1
        newest, seen = json.loads(answer)["ts"], len(watch.messages)
        broker.start()

        def answers_since(lo: float) -> list[float]:  # delivered live (not a retained copy) after the restart
            live = [m for m in watch.messages[seen:] if m.topic == f"{base}/task/door" and not m.retain]
            return [ts for ts in (json.loads(m.payload)["ts"] for m in live) if ts > lo]

        # In order: once the newest (or a later one) is in, any older one made in the outage would have come first.
        watch.wait_for(lambda _: bool(answers_since(newest - 0.001)), timeout_s=60)
        assert min(answers_since(stopped + 1)) >= newest  # no superseded answer replayed
        assert daemon.alive
    finally:
        code = finish(daemon, watch)
    assert code == 0
