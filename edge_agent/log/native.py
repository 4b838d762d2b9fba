"""What native libraries (OpenCV, FFmpeg, onnxruntime, ALSA) print on fd 2, read through a pipe and logged through
Python logging under `edge_agent.native` at the level each line says; Python's own stderr keeps the real fd 2."""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import io
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

log = logging.getLogger("edge_agent.native")

_OPENCV = re.compile(r"^\[\s*(FATAL|ERROR|WARN|INFO|DEBUG|VERB\w*)\s*:[^\]]*\]\s*(?:global\s+)?(.*)$")
_FFMPEG = re.compile(r"^\[([\w.:,-]+) @ (?:0x)?[0-9a-fA-F]+\]\s*(.*)$")
_ONNXRUNTIME = re.compile(r"^(?:\S+ \S+ )?\[([VIWEF]):onnxruntime:[^,\]]*,\s*([^\]]*)\]\s*(.*)$")
_ALSA = re.compile(r"^ALSA lib (.*)$")
_OPENCV_LEVELS = {"FATAL": logging.CRITICAL, "ERROR": logging.ERROR, "WARN": logging.WARNING, "INFO": logging.INFO}
_ORT_LEVELS = {"V": logging.DEBUG, "I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
_SYNC = b"\x00edge-agent-native-sync "
REPEAT_QUIET_S = 600.0  # the same native line again within this long is logged at DEBUG


@dataclass(frozen=True)
class NativeLine:
    """One line a native library printed: its level, who printed it (`opencv`, `ffmpeg tcp`, ...), its text."""

    level: int
    origin: str
    text: str
    monotonic: float = 0.0


def parse_native_line(line: str, now: float = 0.0) -> NativeLine | None:
    """The level, origin and text of a line OpenCV, FFmpeg, onnxruntime or ALSA printed; None for any other line.
    FFmpeg prints only errors (OpenCV sets AV_LOG_ERROR) for a source that is retried: they are WARNING."""
    line = line.rstrip("\r\n")
    if match := _OPENCV.match(line):
        level = _OPENCV_LEVELS.get(match[1], logging.DEBUG)
        return NativeLine(level, "opencv", match[2].strip(), now)
    if match := _FFMPEG.match(line):
        return NativeLine(logging.WARNING, f"ffmpeg {match[1]}", match[2].strip(), now)
    if match := _ONNXRUNTIME.match(line):
        return NativeLine(_ORT_LEVELS[match[1]], "onnxruntime", f"{match[2].strip()}: {match[3].strip()}", now)
    if match := _ALSA.match(line):
        return NativeLine(logging.WARNING, "alsa", match[1].strip(), now)
    return None


@dataclass
class NativeWatch:
    """The native lines seen while a blocking call ran; `shared` when another watch overlapped it (a line without
    a host in it may then belong to either)."""

    lines: list[NativeLine] = field(default_factory=list)
    shared: bool = False


class NativeStderr:
    """fd 2 replaced by a pipe; a thread reads it and logs each native line (other lines are written unchanged to
    the real stderr, or logged when `passthrough` is False, e.g. with JSON logs)."""

    def __init__(self, passthrough: bool) -> None:
        self.passthrough = passthrough
        self.real_fd = os.dup(2)
        self._read_fd, write_fd = os.pipe()
        sys.stderr.flush()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.real = open(self.real_fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        self._lock = threading.Condition()
        self._watch_objects: dict[int, NativeWatch] = {}
        self._synced = self._sent = 0
        self._restored = False  # fd 2 is the real stderr again (at exit): no more sync markers
        # held while a marker is written (never after restore()); the reader never takes it, so a full pipe
        # cannot deadlock
        self._write_lock = threading.Lock()
        self._last_said: dict[str, float] = {}
        self._thread = threading.Thread(target=self._read, name="native-stderr", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        pending = b""
        while chunk := os.read(self._read_fd, 65536):
            pending = self._consume(pending + chunk)

    def _consume(self, data: bytes) -> bytes:
        """Handle each complete line and sync marker in `data` in order; the incomplete rest. A marker may land
        between two writes of one native line (FFmpeg writes a line in parts): the line goes on after it."""
        while (newline := data.find(b"\n")) >= 0:
            marker = data.find(_SYNC, 0, newline)
            if marker >= 0:
                number = data[marker + len(_SYNC) : newline]
                data = data[:marker] + data[newline + 1 :]
                with self._lock:
                    self._synced = max(self._synced, int(number) if number.isdigit() else 0)
                    self._lock.notify_all()
                continue
            raw, data = data[:newline], data[newline + 1 :]
            try:
                self._line(raw)
            except Exception:  # the reader must never stop: native writers would block on a full pipe
                self.real.write(raw.decode(errors="replace") + "\n")
        return data

    def _line(self, raw: bytes) -> None:
        text = raw.decode(errors="replace")
        parsed = parse_native_line(text, time.monotonic())
        if parsed is None:
            if self.passthrough or not text.strip():
                self.real.write(text + "\n")
            else:
                log.warning("%s", text.rstrip())
            return
        with self._lock:
            for watch in self._watch_objects.values():
                watch.lines.append(parsed)
        log.log(self._level(parsed), "%s: %s", parsed.origin, parsed.text)

    def _level(self, line: NativeLine) -> int:
        """The line's level the first time; DEBUG when the same line came less than REPEAT_QUIET_S ago."""
        key = f"{line.origin}\0{line.text}"
        last = self._last_said.get(key)
        if last is not None and line.monotonic - last < REPEAT_QUIET_S:
            return logging.DEBUG
        if len(self._last_said) > 1000:
            self._last_said.clear()
        self._last_said[key] = line.monotonic
        return line.level

    def sync(self, timeout_s: float = 1.0) -> None:
        """Return once every byte written to fd 2 before this call has been read (or after `timeout_s`)."""
        with self._write_lock:
            if self._restored:
                return
            with self._lock:
                self._sent += 1
                number = self._sent
            os.write(2, _SYNC + str(number).encode() + b"\n")
        with self._lock:
            self._lock.wait_for(lambda: self._synced >= number, timeout_s)

    @contextlib.contextmanager
    def watch(self) -> Iterator[NativeWatch]:
        """Collect the native lines printed while the body runs (synced at both ends: earlier lines are not its)."""
        seen = NativeWatch()
        key = id(seen)
        self.sync()
        with self._lock:
            for other in self._watch_objects.values():
                other.shared = seen.shared = True
            self._watch_objects[key] = seen
        try:
            yield seen
        finally:
            self.sync()
            with self._lock:
                del self._watch_objects[key]

    def restore(self) -> None:
        """Put the real stderr back on fd 2 (at exit: a late native line must not wait for a reader)."""
        with contextlib.suppress(OSError, ValueError):
            self.sync(0.5)
            with self._write_lock:
                self._restored = True
                os.dup2(self.real_fd, 2)


class StderrLines(io.TextIOBase):
    """sys.stderr when every line must be a log record (JSON logs): each line Python code writes is logged at WARNING
    under `edge_agent.stderr`; a write made while logging (e.g. logging's own error report) goes to the real stderr."""

    def __init__(self, real: io.TextIOWrapper) -> None:
        super().__init__()
        self.real = real
        self._pending = ""
        self._lock = threading.Lock()
        self._inside = threading.local()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The real stderr's encoding."""
        return self.real.encoding

    def fileno(self) -> int:
        """The real stderr's descriptor."""
        return self.real.fileno()

    def write(self, text: str) -> int:
        """Log each complete line; keep a partial one for the next write."""
        if getattr(self._inside, "active", False):
            return self.real.write(text)
        with self._lock:
            *lines, self._pending = (self._pending + text).split("\n")
        self._inside.active = True
        try:
            for line in lines:
                if line.strip():
                    logging.getLogger("edge_agent.stderr").warning("%s", line.rstrip())
        finally:
            self._inside.active = False
        return len(text)

    def flush(self) -> None:
        """Flush the real stderr."""
        self.real.flush()


class _Installed:
    """The process's one capture, once installed."""

    capture: NativeStderr | None = None


def capture_native_stderr(passthrough: bool = True) -> NativeStderr:
    """Once per process: native stderr into the log; faulthandler, and sys.stderr when `passthrough`, keep the real
    stderr (without it, each line written to sys.stderr is logged: see StderrLines)."""
    capture = _Installed.capture
    if capture is None:
        _Installed.capture = capture = NativeStderr(passthrough)
        faulthandler.enable(capture.real)  # a crash's traceback must not wait in the pipe
        atexit.register(capture.restore)
    capture.passthrough = passthrough
    sys.stderr = capture.real if passthrough else StderrLines(capture.real)
    return capture


@contextlib.contextmanager
def watch_native() -> Iterator[NativeWatch]:
    """The native lines printed while the body runs; always empty when native stderr is not captured."""
    capture = _Installed.capture
    if capture is None:
        yield NativeWatch()
        return
    with capture.watch() as seen:
        yield seen
