"""Where frames come from: OpenCV captures, `exec:` MJPEG commands, image files and image directories."""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


class SourceError(Exception):
    """A frame source failed; `permanent` means retrying cannot help (e.g. a missing file)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class FrameSource(Protocol):
    """A blocking producer of BGR frames."""

    live: bool  # frames arrive in real time (device, stream); files are paced by the reader

    def grab(self) -> bool:
        """Advance to the next frame without decoding it if possible; False at the end or on failure."""
        ...

    def retrieve(self) -> np.ndarray:
        """The frame grabbed last, decoded."""
        ...

    def close(self) -> None:
        """Release the source."""
        ...


class OpenCVSource:
    """A V4L2 device or index, a network stream, or a video file, through cv2.VideoCapture."""

    def __init__(self, target: str | int, width: int | None = None, height: int | None = None) -> None:
        self.live = not (isinstance(target, str) and Path(target).is_file())
        backend = cv2.CAP_V4L2 if isinstance(target, int) or str(target).startswith("/dev/") else cv2.CAP_FFMPEG
        self._capture = cv2.VideoCapture(target, backend)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"cannot open {target}", permanent=not self.live)
        if width and height:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the newest frame, not a backlog
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.native_fps = fps if 0 < fps < 1000 else 0.0

    def grab(self) -> bool:
        """Advance one frame."""
        return bool(self._capture.grab())

    def retrieve(self) -> np.ndarray:
        """Decode the grabbed frame."""
        ok, frame = self._capture.retrieve()
        if not ok or frame is None:
            raise SourceError("frame could not be decoded")
        return np.asarray(frame)

    def close(self) -> None:
        """Release the capture."""
        self._capture.release()


class ImageSource:
    """One image file, or a directory of images in name order; files are never live."""

    live = False

    def __init__(self, path: Path) -> None:
        paths = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})", permanent=True)
        self._paths = paths
        self._next = 0
        self._current: Path | None = None
        self.native_fps = 0.0

    def grab(self) -> bool:
        """Move to the next image; False after the last one."""
        if self._next >= len(self._paths):
            return False
        self._current = self._paths[self._next]
        self._next += 1
        return True

    def retrieve(self) -> np.ndarray:
        """Read the current image."""
        assert self._current is not None
        frame = cv2.imread(str(self._current), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"{self._current}: not a readable image")
        return np.asarray(frame)

    def close(self) -> None:
        """Nothing to release."""


class CommandSource:
    """A command whose stdout is an MJPEG stream, e.g. `rpicam-vid -t 0 --codec mjpeg -o -`."""

    live = True
    native_fps = 0.0

    def __init__(self, command: str, chunk: int = 65536) -> None:
        try:
            self._process = subprocess.Popen(
                shlex.split(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
            )
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot start {command!r}: {exc}") from None
        self._buffer = bytearray()
        self._jpeg = b""
        self._chunk = chunk

    def grab(self) -> bool:
        """Read until one complete JPEG is buffered."""
        assert self._process.stdout is not None
        while True:
            start = self._buffer.find(_SOI)
            end = self._buffer.find(_EOI, start + 2) if start >= 0 else -1
            if end >= 0:
                self._jpeg = bytes(self._buffer[start : end + 2])
                del self._buffer[: end + 2]
                return True
            if start > 0:
                del self._buffer[:start]
            data = self._process.stdout.read(self._chunk)
            if not data:
                return False
            self._buffer += data
            if len(self._buffer) > 32 * 1024 * 1024:
                raise SourceError("no complete JPEG in 32 MiB of output: is the stream MJPEG?")

    def retrieve(self) -> np.ndarray:
        """Decode the buffered JPEG."""
        frame = cv2.imdecode(np.frombuffer(self._jpeg, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError("corrupt JPEG in the command's output")
        return np.asarray(frame)

    def close(self) -> None:
        """Stop the command."""
        self._process.terminate()
        try:
            self._process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def open_frame_source(source: str | int, width: int | None = None, height: int | None = None) -> FrameSource:
    """Open the source a camera's `source` setting names."""
    if isinstance(source, int):
        return OpenCVSource(source, width, height)
    if source.startswith("exec:"):
        return CommandSource(source.removeprefix("exec:").strip())
    if "://" in source:
        return OpenCVSource(source, width, height)
    path = Path(source)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        if not path.exists():
            raise SourceError(f"{path}: no such file or directory", permanent=True)
        return ImageSource(path)
    if source.startswith("/dev/"):
        if not path.exists():
            raise SourceError(f"{path}: no such device (unplugged?)")
        return OpenCVSource(source, width, height)
    if not path.is_file():
        raise SourceError(f"{path}: no such file", permanent=True)
    return OpenCVSource(source, width, height)


def pace(next_due: float, interval: float) -> float:
    """Sleep until `next_due` (monotonic) and return the following due time."""
    delay = next_due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return max(next_due + interval, time.monotonic())
