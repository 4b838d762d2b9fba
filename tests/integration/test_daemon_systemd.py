"""The daemon under a fake systemd: READY=1 once the model load has settled, WATCHDOG=1 pings, STOPPING=1."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from paho.mqtt import publish
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.notify import receive_until

REPO = Path(__file__).resolve().parents[2]


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


HANGING_INFERENCE = """
import asyncio, sys, time
from pathlib import Path
from edge_agent import app
from edge_agent.config import load_config
from edge_agent.log import setup_logging
from edge_agent.model.runtime.answer import Answerer

def hang(*_args, **_kwargs):
    print("inference hangs", file=sys.stderr, flush=True)
    time.sleep(3600)  # a stuck onnxruntime call, as far as the daemon can tell

Answerer.answer = hang
setup_logging("info")
sys.exit(asyncio.run(app.run(load_config(Path(sys.argv[1])))))
"""


def test_watchdog_pings_stop_while_the_inference_thread_hangs(
    tmp_path: Path, mosquitto: Mosquitto, write_config: Callable[[str], Path]
) -> None:
    config = write_config(
        f"""
        device: {{id: hang1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}
        model: {{path: {REPO / "models" / "tiny-gemma4"}}}
        health: {{watchdog_stall_s: 1}}
        """
    )
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
        daemon = Daemon(config, env=env, argv=[sys.executable, "-c", HANGING_INFERENCE, str(config)])
        try:
            receive_until(sock, "READY=1")
            receive_until(sock, "WATCHDOG=1")  # idle: pinging
            publish.single(
                "edge_agent/hang1/ask", '{"question": "hello?"}', hostname=mosquitto.host, port=mosquitto.port
            )
            daemon.wait_for_lines("inference hangs")
            time.sleep(1.5)  # past watchdog_stall_s
            while True:  # drain what was sent before the stall was noticed
                sock.settimeout(0.05)
                try:
                    sock.recv(4096)
                except TimeoutError:
                    break
            late: list[str] = []
            listen_until = time.monotonic() + 2.0  # five ping periods
            with contextlib.suppress(TimeoutError):
                while (left := listen_until - time.monotonic()) > 0:
                    sock.settimeout(left)
                    late.append(sock.recv(4096).decode())
            assert not any("WATCHDOG=1" in m for m in late), late
        finally:
            daemon.kill()  # a hung thread cannot be stopped from inside: systemd's restart does this
