"""`exec:` cameras: a command whose stdout is an MJPEG stream, with its stderr logged."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from edge_agent.sources.errors import SourceError

log = logging.getLogger(__name__)

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


class StderrLog:
    """A child's stderr, read on a thread of its own: each line is logged at WARNING after `prefix` (at most `burst`
    lines per `window_s`; the rest are counted and said in one line), and the last one is kept as `last`."""

    def __init__(self, stream: IO[bytes], prefix: str, burst: int = 10, window_s: float = 10.0) -> None:
        self.prefix, self.last = prefix, ""
        self._burst, self._window_s = burst, window_s
        self._thread = threading.Thread(target=self._read, args=(stream,), name=f"{prefix}-stderr", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        window, shown, hidden = time.monotonic(), 0, 0
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace").strip()
                if not line:
                    continue
                self.last = line[:300]
                if time.monotonic() - window >= self._window_s:
                    self._say_hidden(hidden)
                    window, shown, hidden = time.monotonic(), 0, 0
                if shown < self._burst:
                    log.warning("%s: %s", self.prefix, line)
                    shown += 1
                else:
                    hidden += 1
        self._say_hidden(hidden)

    def _say_hidden(self, count: int) -> None:
        if count:
            log.warning("%s: %d more line(s) on stderr not logged", self.prefix, count)

    def finish(self, timeout_s: float) -> str:
        """Wait up to `timeout_s` for the child's stderr to end (it exited); the last line."""
        self._thread.join(timeout_s)
        return self.last


class CommandSource:
    """A command whose stdout is an MJPEG stream, e.g. `rpicam-vid -t 0 --codec mjpeg -o -`; its first frame
    must come within `open_timeout_s` of starting it, each next one within `read_timeout_s`. Its stderr is logged
    (prefixed with `label`, e.g. the camera's name) and its last line is part of the reason when the command fails."""

    live = True
    native_fps = 0.0

    def __init__(
        self,
        command: str,
        chunk: int = 65536,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        label: str = "exec",
    ) -> None:
        try:
            argv = shlex.split(command)
            self._process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,  # its own process group: stopping it stops what it started too
            )
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot start {command!r}: {exc}") from None
        assert self._process.stderr is not None
        self._stderr = StderrLog(self._process.stderr, f"{label}: {Path(argv[0]).name}")
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
                raise SourceError(self._ended())
            self._buffer += data
            if len(self._buffer) > 32 * 1024 * 1024:
                raise SourceError("no complete JPEG in 32 MiB of output: is the stream MJPEG?")

    def _read(self, deadline: float, timeout: float) -> bytes:
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            after = "of starting it" if self._frames == 0 else "of the last one"
            last = self._stderr.last
            raise SourceError(f"{self._command!r}: no frame within {timeout:g} s {after}{_said(last)}")
        return os.read(fd, self._chunk)

    def _ended(self) -> str:
        """Why the output ended: the exit status and the last line of stderr."""
        try:
            code: int | None = self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        how = "closed its output" if code is None else f"exited with status {code}"
        return f"{self._command!r} {how}{_said(self._stderr.finish(1.0))}"

    def retrieve(self) -> np.ndarray:
        """Decode the buffered JPEG."""
        try:
            frame = cv2.imdecode(np.frombuffer(self._jpeg, np.uint8), cv2.IMREAD_COLOR)
        except cv2.error:  # e.g. a JPEG header claiming more pixels than OpenCV decodes
            frame = None
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


def _said(line: str) -> str:
    return f": {line}" if line else ""
