"""Cameras on real OpenCV: video files, image directories, an MJPEG stream that drops, an exec: command, and
streams that cannot open saying why (refused, HTTP 404, a web page), failing after a few attempts and recovering."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest
from rig.camera import MjpegServer, moving_square

from edge_agent.config import CameraConfig
from edge_agent.messages import Frame
from edge_agent.service import Backoff
from edge_agent.sources.camera import FAILED_AFTER_ATTEMPTS, Camera, CameraStatus


class Running:
    """A camera on its own thread, with what it delivered."""

    def __init__(self, config: CameraConfig, backoff: Backoff | None = None) -> None:
        self.frames: list[Frame] = []
        self.states: list[str] = []
        self.stop = threading.Event()
        self.camera = Camera(config, self.frames.append, on_status=self._status)
        if backoff is not None:
            self.camera.backoff = backoff
        self.thread = threading.Thread(target=self.camera.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def _status(self, status: CameraStatus) -> None:
        self.states.append(status.state)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out; states={self.states}, frames={len(self.frames)}"
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def camera(source: str | int, **options: object) -> CameraConfig:
    return CameraConfig.model_validate({"name": "cam", "source": source, **options})


def test_video_file_respects_the_fps_cap_and_transforms(video_file: Path) -> None:
    run = Running(camera(str(video_file), fps=4, rotate=90, crop={"x": 0, "y": 0, "width": 200, "height": 100}))
    run.wait_for(lambda: len(run.frames) >= 9)
    run.close()
    assert run.states[0] == "ok"
    assert all(f.image.shape == (100, 200, 3) for f in run.frames)  # rotated 320x240 -> 240x320, then cropped
    frames = run.frames
    average_rate = (len(frames) - 1) / (frames[-1].monotonic - frames[0].monotonic)
    assert average_rate <= 4 * 1.05  # the 10 fps file is capped at 4 fps on average
    assert [f.index for f in run.frames] == list(range(1, len(run.frames) + 1))


def test_image_directory_plays_once_then_ends(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"frame_{i:04d}.png"), moving_square(i))
    run = Running(camera(str(tmp_path), fps=20, loop=False))
    run.wait_for(lambda: "ended" in run.states)
    run.close()
    assert len(run.frames) == 3 and run.states == ["ok", "ended"]


def test_missing_file_fails_for_good(tmp_path: Path) -> None:
    run = Running(camera(str(tmp_path / "nope.mp4")))
    run.wait_for(lambda: "failed" in run.states)
    run.close()
    assert run.camera.status.last_error is not None and "no such file" in run.camera.status.last_error


def test_mjpeg_stream_survives_a_ten_second_outage(mjpeg_server: MjpegServer) -> None:
    run = Running(camera(mjpeg_server.url, fps=5), Backoff(initial_s=0.5, maximum_s=2.0))
    run.wait_for(lambda: len(run.frames) >= 3)
    mjpeg_server.stop()
    run.wait_for(lambda: run.camera.status.state == "reconnecting")
    before = len(run.frames)
    time.sleep(10)
    # still retried: `failed` once FAILED_AFTER_ATTEMPTS attempts in a row brought no frame
    assert run.camera.status.state in ("reconnecting", "failed") and len(run.frames) == before
    assert run.camera.status.last_error == f"cannot open {mjpeg_server.url}: connection refused"
    mjpeg_server.start()
    run.wait_for(lambda: run.camera.status.state == "ok" and len(run.frames) >= before + 3)
    run.close()
    assert run.states[:2] == ["ok", "reconnecting"] and run.states[-1] == "ok"
    assert run.camera.status.reconnects >= 1


MJPEG_WRITER = """
import sys, time, cv2, numpy as np
for i in range(1000):
    frame = np.full((120, 160, 3), i % 255, np.uint8)
    sys.stdout.buffer.write(cv2.imencode(".jpg", frame)[1].tobytes())
    sys.stdout.buffer.flush()
    time.sleep(0.02)
"""


def test_exec_command_mjpeg_source(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(MJPEG_WRITER)
    run = Running(camera(f"exec:{sys.executable} {script}", fps=10))
    run.wait_for(lambda: len(run.frames) >= 3)
    run.close()
    assert run.frames[0].image.shape == (120, 160, 3)


@pytest.mark.parametrize("source", ["exec:/nonexistent/rpicam-vid", "/dev/edge-agent/cam9"])
def test_unavailable_live_sources_keep_retrying_and_fail_after_a_few_attempts(source: str) -> None:
    run = Running(camera(source), Backoff(initial_s=0.05, maximum_s=0.1))
    run.wait_for(lambda: run.camera.status.reconnects >= FAILED_AFTER_ATTEMPTS + 3)  # failed, and still retried
    run.close()
    assert run.states == ["reconnecting", "failed"] and run.camera.status.state == "failed"


def test_an_exec_command_that_fails_has_its_stderr_logged_and_kept_as_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    run = Running(camera("exec:sh -c 'echo boom >&2; exit 3'"), Backoff(initial_s=0.05, maximum_s=0.1))
    run.wait_for(lambda: run.camera.status.reconnects >= 2)
    run.close()
    status = run.camera.status
    assert status.state == ("failed" if status.reconnects >= FAILED_AFTER_ATTEMPTS else "reconnecting")
    assert status.last_error == "\"sh -c 'echo boom >&2; exit 3'\" exited with status 3: boom"
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "boom" in r.getMessage()]
    assert (logging.WARNING, "camera cam: sh: boom") in said  # the line itself, prefixed with the camera
    assert any(level == logging.WARNING and message.startswith("camera cam: reconnecting (") for level, message in said)


def test_an_exec_command_that_writes_a_lot_on_stderr_is_logged_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    script = "for i in $(seq 1 500); do echo line $i >&2; done; exit 1"
    run = Running(camera(f"exec:sh -c '{script}'"), Backoff(initial_s=5, maximum_s=5))
    run.wait_for(lambda: run.camera.status.state == "reconnecting")
    run.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("camera cam: sh: ")]
    assert lines[:10] == [f"camera cam: sh: line {i}" for i in range(1, 11)]
    assert lines[10:] == ["camera cam: sh: 490 more line(s) on stderr not logged"]
    assert run.camera.status.last_error is not None and run.camera.status.last_error.endswith(": line 500")


def test_a_stream_that_never_opens_says_why_fails_at_warning_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = MjpegServer()  # not started yet: its port refuses connections
    run = Running(camera(server.url, fps=5), Backoff(initial_s=0.05, maximum_s=0.2))
    try:
        run.wait_for(lambda: run.camera.status.state == "failed")
        refused = f"cannot open {server.url}: connection refused"
        assert run.camera.status.last_error == refused
        said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "edge_agent.sources.camera"]
        assert said[0] == (logging.WARNING, f"camera cam: reconnecting ({refused})")
        assert (logging.WARNING, f"camera cam: failed ({refused}), still retrying") in said
        server.start()
        run.wait_for(lambda: run.camera.status.state == "ok" and len(run.frames) >= 2)
    finally:
        run.close()
        server.stop()
    assert run.states == ["reconnecting", "failed", "ok"] and run.camera.status.last_error is None


def test_a_stream_the_server_does_not_have_says_http_404(mjpeg_server: MjpegServer) -> None:
    url = mjpeg_server.url.replace("stream.mjpg", "missing.mjpg")
    run = Running(camera(url), Backoff(initial_s=0.05, maximum_s=0.1))
    run.wait_for(lambda: run.camera.status.reconnects >= 1)
    run.close()
    assert run.camera.status.last_error == f"cannot open {url}: HTTP 404 Not Found"


def test_a_password_in_a_stream_url_is_not_logged_or_kept() -> None:
    server = MjpegServer()  # never started: refused
    url = server.url.replace("127.0.0.1", "admin:s3cret@127.0.0.1")
    run = Running(camera(url), Backoff(initial_s=0.05, maximum_s=0.1))
    run.wait_for(lambda: run.camera.status.reconnects >= 1)
    run.close()
    error = run.camera.status.last_error
    assert error is not None and "s3cret" not in error and "admin:***@127.0.0.1" in error


def test_a_url_that_serves_a_web_page_says_so() -> None:
    class LoginPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>log in</html>")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), LoginPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        run = Running(camera(url), Backoff(initial_s=0.05, maximum_s=0.1))
        run.wait_for(lambda: run.camera.status.reconnects >= 1)
        run.close()
    finally:
        server.shutdown()
        server.server_close()
    assert run.camera.status.last_error == f"cannot open {url}: HTTP 200, but not a stream OpenCV can read (text/html)"
