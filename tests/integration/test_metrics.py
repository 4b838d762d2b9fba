"""The optional Prometheus endpoint of a running daemon: health gauges, degradation level, camera state."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from rig.broker import Mosquitto, free_port
from rig.daemon import Daemon
from rig.subscriber import Subscriber

from edge_agent.sinks.metrics import HEALTH_GAUGES

REPO = Path(__file__).resolve().parents[2]
GAUGES = {key: name for key, (name, _help, _factor) in HEALTH_GAUGES.items()}


def scrape(port: int, wanted: str, timeout_s: float = 30.0) -> str:
    """/metrics once it contains `wanted`."""
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            text = ""
        if wanted in text:
            return text
        time.sleep(0.3)
    raise AssertionError(f"{wanted!r} not in /metrics:\n{text[-2000:]}")


def test_metrics_on_localhost(mosquitto: Mosquitto, write_config: Callable[[str], Path]) -> None:
    port = free_port()
    config = write_config(
        f"""
        device: {{id: node1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}
        model: {{path: {REPO / "models" / "tiny-gemma4"}}}
        cameras:
          - {{name: garage, source: {REPO / "deploy" / "demo" / "garage.mp4"}, fps: 5}}
        health: {{interval_s: 0.5, prometheus_port: {port}}}
        """
    )
    health = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/node1/health"])
    daemon = Daemon(config)
    try:
        text = scrape(port, 'edge_agent_camera_up{camera="garage"} 1.0')
        assert "edge_agent_degradation_level 0.0" in text
        assert "edge_agent_spool_depth" in text and "edge_agent_process_resident_bytes" in text
        rss = next(line for line in text.splitlines() if line.startswith("edge_agent_process_resident_bytes "))
        assert float(rss.split()[1]) > 10 * 2**20
        report = json.loads(health.wait_for(lambda messages: len(messages) >= 1)[-1].payload)
        unknown = [key for key, value in report.items() if value is None and key in GAUGES]
        text = scrape(port, "edge_agent_spool_depth")
        for key in unknown:  # what the node cannot measure is absent, not a 0
            assert f"{GAUGES[key]} " not in text and f"{GAUGES[key]}{{" not in text, key
    finally:
        assert daemon.stop() == 0
        health.close()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):  # nothing serves it after shutdown
        probe.connect(("127.0.0.1", port))


def test_a_busy_port_leaves_the_daemon_running(mosquitto: Mosquitto, write_config: Callable[[str], Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            f"""
            mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}
            model: {{path: {REPO / "models" / "tiny-gemma4"}}}
            health: {{prometheus_port: {port}}}
            """
        )
        daemon = Daemon(config)
        try:
            daemon.wait_for_lines("cannot serve Prometheus")
            daemon.wait_for_lines("mqtt: connected")
            assert daemon.alive
        finally:
            assert daemon.stop() == 0
