"""The daemon on a real mosquitto, as a subscriber sees it: availability, state, health, results."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rig.broker import Mosquitto
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
TOPIC = "edge_agent/node1"


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.host, mosquitto.port, [f"{TOPIC}/#"])
    yield sub
    sub.close()


def start_daemon(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, keepalive: int = 60
) -> subprocess.Popen[str]:
    config = write_config(
        f"""
        device: {{id: node1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, keepalive: {keepalive}}}
        model: {{path: {REPO / "models" / "tiny-gemma4"}}}
        cameras:
          - {{name: garage, source: {REPO / "deploy" / "demo" / "garage.mp4"}, fps: 5}}
        health: {{interval_s: 1}}
        """
    )
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "-c", str(config)], stderr=subprocess.PIPE, text=True
    )


def availability(sub: Subscriber) -> list[bytes]:
    return sub.on(f"{TOPIC}/availability")


def test_online_state_health_results_then_offline_on_a_clean_stop(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    daemon = start_daemon(write_config, mosquitto)
    try:
        subscriber.wait_for(lambda _: availability(subscriber)[-1:] == [b"online"])
        subscriber.wait_for(lambda _: any(b'"ok"' in p for p in subscriber.on(f"{TOPIC}/state")))
        subscriber.wait_for(lambda _: bool(subscriber.on(f"{TOPIC}/health")))
        subscriber.wait_for(lambda _: bool(subscriber.on(f"{TOPIC}/motion/garage")), timeout_s=60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    subscriber.wait_for(lambda _: availability(subscriber)[-1:] == [b"offline"], timeout_s=5)
    state = json.loads(subscriber.on(f"{TOPIC}/state")[-1])
    assert state["cameras"] == {"garage": "ok"} and state["model"]["variant"] == "q4"
    health = json.loads(subscriber.on(f"{TOPIC}/health")[-1])
    assert health["memory_available_mb"] > 0 and health["spool_depth"] >= 0
    motion = json.loads(subscriber.on(f"{TOPIC}/motion/garage")[0])
    assert motion["camera"] == "garage" and motion["motion"] is True and len(motion["id"]) == 32
    assert abs(motion["ts"] - time.time()) < 120


def test_last_will_says_offline_after_kill_9(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    daemon = start_daemon(write_config, mosquitto, keepalive=5)
    subscriber.wait_for(lambda _: availability(subscriber)[-1:] == [b"online"])
    daemon.kill()
    daemon.wait()
    killed = time.monotonic()
    subscriber.wait_for(lambda _: availability(subscriber)[-1:] == [b"offline"], timeout_s=20)
    assert time.monotonic() - killed <= 1.5 * 5 + 3  # the broker's keepalive grace, plus slack
    retained = Subscriber(mosquitto.host, mosquitto.port, [f"{TOPIC}/availability"])
    try:
        got = retained.wait_for(bool)
        assert got[0].payload == b"offline" and got[0].retain
    finally:
        retained.close()
