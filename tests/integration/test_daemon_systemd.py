"""The daemon under a fake systemd: READY=1 once the broker is connected, WATCHDOG=1 pings, STOPPING=1."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from rig.broker import Mosquitto
from rig.daemon import Daemon

REPO = Path(__file__).resolve().parents[2]


def receive_until(sock: socket.socket, wanted: str, timeout_s: float = 30.0) -> list[str]:
    """Datagrams received until one contains `wanted`."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if wanted in got[-1]:
            return got
    raise AssertionError(f"no {wanted!r} from the daemon; got {got}")


def test_ready_watchdog_and_stopping(tmp_path: Path, mosquitto: Mosquitto, write_config: Callable[[str], Path]) -> None:
    config = write_config(
        f"""
        device: {{id: node1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}
        model: {{path: {REPO / "models" / "tiny-gemma4"}}}
        cameras:
          - {{name: garage, source: {REPO / "deploy" / "demo" / "garage.mp4"}, fps: 5}}
        """
    )
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
        daemon = Daemon(config, env=env)
        try:
            before_ready = receive_until(sock, "READY=1")
            assert any("STATUS=waiting for the MQTT broker" in m for m in before_ready)
            pings = receive_until(sock, "WATCHDOG=1")
            pings += receive_until(sock, "WATCHDOG=1")
            assert sum("WATCHDOG=1" in m for m in pings) >= 2
        finally:
            assert daemon.stop() == 0
        assert any("STOPPING=1" in m for m in receive_until(sock, "STOPPING=1", timeout_s=5))
