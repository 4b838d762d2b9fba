"""Where frames come from: OpenCV captures, `exec:` MJPEG commands, image files and image directories."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
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


def interrupt(source: FrameSource) -> None:
    """From another thread: make a source blocked in open/grab return soon, where that can be done safely (an
    `exec:` command is stopped; an OpenCV capture cannot be, its open and read timeouts bound it instead)."""
    stop = getattr(source, "interrupt", None)
    if callable(stop):
        stop()


class OpenCVSource:
    """A V4L2 device or index, a network stream, or a video file, through cv2.VideoCapture; a network stream
    gets FFmpeg's open and read timeouts (a server that accepts and never answers cannot hold it for ever)."""

    def __init__(
        self,
        target: str | int,
        width: int | None = None,
        height: int | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.live = not (isinstance(target, str) and Path(target).is_file())
        backend = cv2.CAP_V4L2 if isinstance(target, int) or str(target).startswith("/dev/") else cv2.CAP_FFMPEG
        network = isinstance(target, str) and "://" in target
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000)] if network else []
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)] if network else []
        self._target, self._read_timeout_s = target, read_timeout_s if network else None
        started = time.monotonic()
        self._capture = cv2.VideoCapture(target, backend, params)
        if not self._capture.isOpened():
            self._capture.release()
            waited = time.monotonic() - started
            why = f": no answer within {open_timeout_s:g} s" if network and waited >= 0.9 * open_timeout_s else ""
            raise SourceError(f"cannot open {target}{why}", permanent=not self.live)
        if width and height:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the newest frame, not a backlog
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.native_fps = fps if 0 < fps < 1000 else 0.0

    def grab(self) -> bool:
        """Advance one frame; a network stream silent for its read timeout raises SourceError."""
        started = time.monotonic()
        if self._capture.grab():
            return True
        if self._read_timeout_s is not None and time.monotonic() - started >= 0.9 * self._read_timeout_s:
            raise SourceError(f"{self._target}: no frame within {self._read_timeout_s:g} s")
        return False

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
    """A command whose stdout is an MJPEG stream, e.g. `rpicam-vid -t 0 --codec mjpeg -o -`; its first frame
    must come within `open_timeout_s` of starting it, each next one within `read_timeout_s`."""

    live = True
    native_fps = 0.0

    def __init__(
        self, command: str, chunk: int = 65536, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0
    ) -> None:
        try:
            self._process = subprocess.Popen(
                shlex.split(command),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
                start_new_session=True,  # its own process group: stopping it stops what it started too
            )
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot start {command!r}: {exc}") from None
        self._command = command
        self._buffer = bytearray()
        self._jpeg = b""
        self._chunk = chunk
        self._timeouts = (open_timeout_s, read_timeout_s)
        self._frames = 0

    def grab(self) -> bool:
        """Read until one complete JPEG is buffered; SourceError when none comes within the timeout."""
        timeout = self._timeouts[1] if self._frames else self._timeouts[0]
        deadline = time.monotonic() + timeout
        while True:
            start = self._buffer.find(_SOI)
            end = self._buffer.find(_EOI, start + 2) if start >= 0 else -1
            if end >= 0:
                self._jpeg = bytes(self._buffer[start : end + 2])
                del self._buffer[: end + 2]
                self._frames += 1
                return True
            if start > 0:
                del self._buffer[:start]
            data = self._read(deadline, timeout)
            if not data:
                return False
            self._buffer += data
            if len(self._buffer) > 32 * 1024 * 1024:
                raise SourceError("no complete JPEG in 32 MiB of output: is the stream MJPEG?")

    def _read(self, deadline: float, timeout: float) -> bytes:
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            after = "of starting it" if self._frames == 0 else "of the last one"
            raise SourceError(f"{self._command!r}: no frame within {timeout:g} s {after}")
        return os.read(fd, self._chunk)

    def retrieve(self) -> np.ndarray:
        """Decode the buffered JPEG."""
        frame = cv2.imdecode(np.frombuffer(self._jpeg, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError("corrupt JPEG in the command's output")
        return np.asarray(frame)

    def interrupt(self) -> None:
        """Stop the command (from any thread): a grab() waiting for its output returns at once."""
        self._signal(signal.SIGTERM)

    def close(self) -> None:
        """Stop the command: SIGTERM to its process group, SIGKILL after a second."""
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._process.wait()

    def _signal(self, number: int) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, number)


def open_frame_source(
    source: str | int,
    width: int | None = None,
    height: int | None = None,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
) -> FrameSource:
    """Open the source a camera's `source` setting names (the timeouts apply to streams and commands)."""
    if isinstance(source, int):
        return OpenCVSource(source, width, height)
    if source.startswith("exec:"):
        command = source.removeprefix("exec:").strip()
        return CommandSource(command, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    if "://" in source:
        return OpenCVSource(source, width, height, open_timeout_s, read_timeout_s)
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
