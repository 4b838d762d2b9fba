"""What OpenCV and FFmpeg print goes through our log, and a camera that cannot open says why: the real daemon (tiny
model, real mosquitto, real OpenCV/FFmpeg) with `--log-format json` and three cameras that never connect: an HTTP
server that answers 404, a port that refuses, and an RTSP server that answers DESCRIBE with 404."""

from __future__ import annotations

import json
import re
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rig.broker import Mosquitto
from rig.camera import MjpegServer
from rig.daemon import Daemon
from rig.subscriber import Subscriber

from edge_agent.sources.stream_probe import probe

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"


class Rtsp404(socketserver.StreamRequestHandler):
    """Answers OPTIONS with 200 and every other RTSP request with 404 Not Found."""

    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                byte = self.rfile.read(1)
                if not byte:
                    return
                head += byte
            sequence = re.search(rb"CSeq: *(\d+)", head)
            status = b"200 OK\r\nPublic: DESCRIBE, SETUP, PLAY" if head.startswith(b"OPTIONS") else b"404 Not Found"
            cseq = sequence[1] if sequence else b"1"
            self.wfile.write(b"RTSP/1.0 " + status + b"\r\nCSeq: " + cseq + b"\r\n\r\n")


@pytest.fixture
def rtsp_404() -> Iterator[str]:
    """The URL of a stream an RTSP server says it does not have."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Rtsp404)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"rtsp://127.0.0.1:{server.server_address[1]}/cam"
    server.shutdown()
    server.server_close()


def test_the_rtsp_probe_reads_the_servers_status(rtsp_404: str) -> None:
    assert probe(rtsp_404, 2.0) == "RTSP 404 Not Found"


def test_with_json_logs_native_lines_are_records_and_cameras_say_why_they_cannot_open(
    tmp_path: Path,
    mosquitto: Mosquitto,
    mjpeg_server: MjpegServer,
    rtsp_404: str,
    write_config: Callable[[str], Path],
) -> None:
    refused = MjpegServer()  # never started: its port refuses
    causes = {
        "notfound": (mjpeg_server.url.replace("stream.mjpg", "missing.mjpg"), "HTTP 404 Not Found"),
        "refused": (refused.url, "connection refused"),
        "rtsp": (rtsp_404, "RTSP 404 Not Found"),
    }
    cameras = [
        f'  - {{name: {name}, source: "{url}", open_timeout_s: 3, motion: {{enabled: false}}}}'
        for name, (url, _) in causes.items()
    ]
    mqtt = f"{{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp_path / 'spool.db'}, discovery: false}}"
    config = write_config(
        "\n".join(
            [
                "device: {id: native1}",
                f"mqtt: {mqtt}",
                f"model: {{path: {MODEL}, max_new_tokens: 8, max_context: 1024}}",
                "cameras:",
                *cameras,
            ]
        )
    )
    base = "edge_agent/native1"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/state"])
    argv = [sys.executable, "-m", "edge_agent", "--log-format", "json", "run", "-c", str(config)]
    daemon = Daemon(config, argv=argv)
    try:
        for name in causes:
            daemon.wait_for_lines(f"camera {name}: failed (", timeout_s=60)

        def errors_said(_: object) -> bool:
            states = [json.loads(body) for body in subscriber.on(f"{base}/state") if body]
            return bool(states) and set(states[-1]["cameras"].values()) == {"failed"}

        subscriber.wait_for(errors_said, timeout_s=30)
    finally:
        daemon.stop()
        subscriber.close()
    records = [json.loads(line) for _, line in daemon.lines]  # every line on stderr is one JSON record
    said = {(r["logger"], r["level"], r["msg"]) for r in records}
    for name, (url, cause) in causes.items():
        reason = f"cannot open {url}: {cause}"
        assert ("edge_agent.sources.camera", "warning", f"camera {name}: reconnecting ({reason})") in said
        assert ("edge_agent.sources.camera", "warning", f"camera {name}: failed ({reason}), still retrying") in said
    state = json.loads(subscriber.on(f"{base}/state")[-1])
    assert state["camera_errors"] == {name: f"cannot open {url}: {cause}" for name, (url, cause) in causes.items()}
    native = [r for r in records if r["logger"] == "edge_agent.native"]
    assert any(r["msg"].startswith("opencv: cap.cpp") and r["level"] == "warning" for r in native), native
    refused_port = f"tcp://127.0.0.1:{refused.port}"
    assert any(r["msg"].startswith("ffmpeg tcp: Connection to " + refused_port) for r in native), native
    assert any(r["msg"] == "ffmpeg rtsp: method DESCRIBE failed: 404 (Not Found)" for r in native), native
    # OpenCV says the same after each of the 3 x FAILED_AFTER_ATTEMPTS failed opens: at WARNING once, then at DEBUG
    assert len([r for r in native if r["msg"].startswith("opencv: cap.cpp")]) == 1, native
