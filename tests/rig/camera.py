"""Camera inputs for tests: synthetic video files and an MJPEG-over-HTTP stream on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from rig.broker import free_port, wait_for_port

FrameFn = Callable[[int], np.ndarray]


def moving_square(index: int, width: int = 320, height: int = 240, size: int = 40) -> np.ndarray:
    """A BGR frame: grey background with a white square that moves 8 px per frame."""
    frame = np.full((height, width, 3), 64, np.uint8)
    x = (index * 8) % (width - size)
    cv2.rectangle(frame, (x, height // 3), (x + size, height // 3 + size), (255, 255, 255), -1)
    return frame


def write_video(path: Path, frames: int, fps: float = 10.0, frame_fn: FrameFn = moving_square) -> Path:
    """Encode `frames` synthetic frames into a video file with OpenCV's bundled FFmpeg."""
    first = frame_fn(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, first.shape[1::-1])
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for index in range(frames):
        writer.write(frame_fn(index))
    writer.release()
    return path


class MjpegServer:
    """Serves multipart MJPEG at http://127.0.0.1:PORT/stream.mjpg; stop()/start() unplug and replug."""

    def __init__(self, frame_fn: FrameFn = moving_square, fps: float = 10.0) -> None:
        self.frame_fn = frame_fn
        self.fps = fps
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    @property
    def url(self) -> str:
        """The stream URL."""
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while server._running.is_set():
                        _ok, jpeg = cv2.imencode(".jpg", server.frame_fn(index))
                        data = jpeg.tobytes()
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(data)}\r\n\r\n".encode()
                            + data
                            + b"\r\n"
                        )
                        index += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler

    def start(self) -> None:
        """Start serving (again, on the same port)."""
        self._running.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop serving and drop open streams."""
        self._running.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
