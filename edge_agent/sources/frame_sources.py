"""Where frames come from: OpenCV captures, `exec:` MJPEG commands, image files and image directories."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge_agent.log.native import watch_native
from edge_agent.sources.command import CommandSource
from edge_agent.sources.errors import SourceError
from edge_agent.sources.stream_probe import open_failure_cause, redact

__all__ = [
    "IMAGE_SUFFIXES",
    "CommandSource",
    "FrameSource",
    "ImageSource",
    "OpenCVSource",
    "SourceError",
    "interrupt",
    "open_frame_source",
    "pace",
]
log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


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
        self._target, self._read_timeout_s = redact(str(target)), read_timeout_s if network else None
        started = time.monotonic()
        with watch_native() as native:
            self._capture = cv2.VideoCapture(target, backend, params)
        if not self._capture.isOpened():
            self._capture.release()
            why = ""
            if network:
                assert isinstance(target, str)
                waited = time.monotonic() - started
                cause = (
                    f"no answer within {open_timeout_s:g} s"
                    if waited >= 0.9 * open_timeout_s
                    else open_failure_cause(target, open_timeout_s, native.lines, native.shared)
                )
                why = f": {cause}" if cause else ""
            raise SourceError(f"cannot open {self._target}{why}", permanent=not self.live)
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
        try:
            frame = cv2.imread(str(self._current), cv2.IMREAD_COLOR)
        except cv2.error as exc:  # e.g. more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS)
            raise SourceError(f"{self._current}: not a readable image ({_cv_reason(exc)})") from None
        if frame is None:
            raise SourceError(f"{self._current}: not a readable image")
        return np.asarray(frame)

    def close(self) -> None:
        """Nothing to release."""


def _cv_reason(exc: BaseException) -> str:
    """OpenCV's own reason from a cv2.error (its last line names the failed check)."""
    text = str(exc).strip().splitlines()
    reason = text[-1] if text else type(exc).__name__
    if "pixels <= CV_IO_MAX_IMAGE_PIXELS" in reason:
        return "too many pixels for OpenCV's limit (CV_IO_MAX_IMAGE_PIXELS)"
    return reason.split(" error: ", 1)[-1]


def open_frame_source(
    source: str | int,
    width: int | None = None,
    height: int | None = None,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
    *,
    label: str = "exec",
) -> FrameSource:
    """Open the source a camera's `source` setting names (the timeouts apply to streams and commands; `label`
    prefixes what a command writes on stderr)."""
    if isinstance(source, int):
        return OpenCVSource(source, width, height)
    if source.startswith("exec:"):
        command = source.removeprefix("exec:").strip()
        return CommandSource(command, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s, label=label)
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
