"""Stop and boot always finish: faults injected into the real daemon (tiny model, real mosquitto, real OpenCV and
child processes). Cameras that accept and never answer (http, rtsp, `exec:sleep 300`) warn once and reconnect, and
never hold up SIGTERM; a generation in progress stops at its next token; a node that boots while the broker is
down still becomes ready (READY=1 once the model is loaded), with STATUS= saying the broker is unreachable."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from paho.mqtt import publish
from rig.binaries import require
from rig.broker import Mosquitto, free_port
from rig.daemon import Daemon
from rig.notify import receive_until
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
STOP_LIMIT_S = 5.0  # the README's promise (systemd's TimeoutStopSec is 15 s)


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte (a hung camera)."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self._socket.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def hung_cameras(server: SilentServer, open_timeout_s: float) -> str:
    port, timeout = server.port, f"open_timeout_s: {open_timeout_s}"
    return f"""
        cameras:
          - {{name: http_cam, source: "http://127.0.0.1:{port}/stream.mjpg", {timeout}, motion: {{enabled: false}}}}
          - {{name: rtsp_cam, source: "rtsp://127.0.0.1:{port}/stream", {timeout}, motion: {{enabled: false}}}}
          - {{name: exec_cam, source: "exec:sleep 300", {timeout}, motion: {{enabled: false}}}}
        """


def node_config(device: str, port: int, tmp_path: Path, extra: str = "") -> str:
    return f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {port}, spool_path: {tmp_path / "spool.db"}, discovery: false}}
        model: {{path: {MODEL}, max_new_tokens: 2000, max_context: 4096}}
        health: {{interval_s: 1}}
        {extra}
        """


def sleepers(daemon: Daemon) -> list[psutil.Process]:
    """The `exec:sleep 300` children of the daemon."""
    children = psutil.Process(daemon.process.pid).children(recursive=True)
    return [child for child in children if child.name() == "sleep"]


def gone(children: list[psutil.Process]) -> bool:
    """None of `children` is still running (a zombie waiting for its reaper counts as gone)."""
    for child in children:
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def stop_timed(daemon: Daemon) -> float:
    """SIGTERM; the seconds until the process exited (0 required)."""
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=30) == 0
    return time.monotonic() - started


def test_cameras_that_never_answer_warn_once_reconnect_and_never_hold_up_the_stop(
    tmp_path: Path, mosquitto: Mosquitto, silent_server: SilentServer, write_config: Callable[[str], Path]
) -> None:
    config = write_config(node_config("hung1", mosquitto.port, tmp_path, hung_cameras(silent_server, 2)))
    base = "edge_agent/hung1"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    daemon = Daemon(config)
    try:
        for name, why in (
            ("http_cam", "no answer within 2 s"),
            ("rtsp_cam", "no answer within 2 s"),
            ("exec_cam", "no frame within 2 s of starting it"),
        ):
            (_, line), *_ = daemon.wait_for_lines(f"camera {name}: reconnecting", timeout_s=30)
            assert "WARNING" in line and why in line, line

        def all_reconnecting(_: object) -> bool:
            states = [json.loads(body) for body in subscriber.on(f"{base}/state") if body]
            return bool(states) and set(states[-1]["cameras"].values()) == {"reconnecting"}

        subscriber.wait_for(all_reconnecting)
        time.sleep(6)  # several more attempts (backoff 1, 2, 4 s): still one warning per camera
        for name in ("http_cam", "rtsp_cam", "exec_cam"):
            assert len([line for _, line in daemon.lines if f"camera {name}:" in line and "WARNING" in line]) == 1
        children = sleepers(daemon)
        assert stop_timed(daemon) < STOP_LIMIT_S
        subscriber.wait_for(lambda _: subscriber.on(f"{base}/availability")[-1:] == [b"offline"])
        assert gone(children)  # the exec: command was stopped, not left behind
    finally:
        daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-40:]))  # shown when the test fails
        subscriber.close()


SLOW_GENERATION = """
import asyncio, dataclasses, sys, time
from pathlib import Path
from edge_agent import app
from edge_agent.config import load_config
from edge_agent.log import setup_logging
from edge_agent.model.runtime import generate

init, stop_after_step = generate.Generation.__init__, generate.Generation._stop_after_step

def long_init(self, model, prompt_ids, settings, decoder):  # a long answer: no EOS, no stop string
    init(self, model, prompt_ids, dataclasses.replace(settings, eos_token_ids=frozenset(), stop_strings=()), decoder)

def slow_step(self, finished):  # 20 tokens per second, each one logged
    print(f"decode step {len(self.result.ids)}", file=sys.stderr, flush=True)
    time.sleep(0.05)
    return stop_after_step(self, finished)

generate.Generation.__init__, generate.Generation._stop_after_step = long_init, slow_step
setup_logging("info")
sys.exit(asyncio.run(app.run(load_config(Path(sys.argv[1])))))
"""


def test_sigterm_during_a_generation_with_cameras_stuck_opening_exits_within_seconds(
    tmp_path: Path, mosquitto: Mosquitto, silent_server: SilentServer, write_config: Callable[[str], Path]
) -> None:
    # the cameras' open timeout (60 s) is far past the stop limit: the stop must not wait for it
    config = write_config(node_config("hung2", mosquitto.port, tmp_path, hung_cameras(silent_server, 60)))
    base = "edge_agent/hung2"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    daemon = Daemon(config, argv=[sys.executable, "-c", SLOW_GENERATION, str(config)])
    try:
        daemon.wait_for_lines("model loaded")
        subscriber.wait_for(lambda _: subscriber.on(f"{base}/availability")[-1:] == [b"online"])
        publish.single(
            f"{base}/ask", '{"question": "Tell me a long story."}', hostname=mosquitto.host, port=mosquitto.port
        )
        daemon.wait_for_lines("decode step 10")
        children = sleepers(daemon)
        assert children, "the exec: camera's command is not running"
        sent = time.monotonic()
        assert stop_timed(daemon) < STOP_LIMIT_S
        steps_after = [line for t, line in daemon.lines if "decode step" in line and t > sent]
        assert len(steps_after) <= 3, steps_after  # the inference thread stopped at its next token
        assert any("generation cancelled" in line for _, line in daemon.lines)
        assert not any("reconnecting" in line for _, line in daemon.lines)  # the cameras were still opening
        subscriber.wait_for(lambda _: subscriber.on(f"{base}/availability")[-1:] == [b"offline"])
        assert gone(children)  # the exec: command was stopped, not left behind
    finally:
        daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-40:]))
        subscriber.close()


def test_a_node_that_boots_without_a_broker_becomes_ready_and_says_the_broker_is_unreachable(
    tmp_path: Path, write_config: Callable[[str], Path]
) -> None:
    port = free_port()  # nothing listens there yet: the broker is down at boot
    config = write_config(node_config("nobroker", port, tmp_path))
    path = tmp_path / "notify.sock"
    broker = Mosquitto(require("mosquitto"), tmp_path / "broker", port=port)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        daemon = Daemon(config, env={**os.environ, "NOTIFY_SOCKET": str(path)})
        try:
            before = receive_until(sock, "READY=1", timeout_s=60)
            assert any("EXTEND_TIMEOUT_USEC=" in m for m in before)  # sent while the model loads
            ready = before[-1]
            assert "STATUS=running; MQTT broker unreachable, retrying" in ready, ready
            assert daemon.wait_for_lines("model loaded", timeout_s=10)  # its log line may be read just after READY=1
            assert daemon.alive
            broker.start()  # the broker comes back: the node connects and STATUS= says so
            subscriber = Subscriber(broker.host, port, ["edge_agent/nobroker/#"])
            try:
                subscriber.wait_for(lambda _: subscriber.on("edge_agent/nobroker/availability")[-1:] == [b"online"])
                later = receive_until(sock, lambda m: "STATUS=running" in m and "unreachable" not in m, timeout_s=30)
                assert not any("READY=1" in m for m in later)  # ready once
                assert stop_timed(daemon) < STOP_LIMIT_S
                subscriber.wait_for(lambda _: subscriber.on("edge_agent/nobroker/availability")[-1:] == [b"offline"])
            finally:
                subscriber.close()
        finally:
            daemon.stop()
            broker.stop()
            print("\n".join(line for _, line in daemon.lines[-40:]))
