"""A camera: reads its source (on a thread the daemon gives it), caps the frame rate, transforms frames, reconnects
with backoff. States: `starting`, `ok` (frames arrive), `reconnecting` (an open or read failed; retried with backoff
up to 30 s apart), `failed` (FAILED_AFTER_ATTEMPTS attempts in a row without a frame, or a permanent error such as a
missing file; a stream, device or command is still retried and goes back to `ok` at its next frame), `ended`."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from edge_agent.config import CameraConfig
from edge_agent.messages import CameraState, Frame
from edge_agent.service import Backoff
from edge_agent.sources.frame_sources import FrameSource, SourceError, interrupt, open_frame_source, pace

log = logging.getLogger(__name__)

_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
_FLIPS = {"horizontal": 1, "vertical": 0, "both": -1}
Opener = Callable[[CameraConfig], FrameSource]
FAILED_AFTER_ATTEMPTS = 5  # failed opens/reads in a row without a frame: `reconnecting` becomes `failed` (~15 s)


@dataclass(frozen=True)
class CameraStatus:
    """What a camera is doing, for health and MQTT."""

    name: str
    state: CameraState = "starting"
    frames: int = 0
    reconnects: int = 0
    last_error: str | None = None


def transform(image: np.ndarray, config: CameraConfig) -> np.ndarray:
    """Resize to the requested resolution, then rotate, flip and crop as configured."""
    if config.width and config.height and image.shape[1::-1] != (config.width, config.height):
        image = cv2.resize(image, (config.width, config.height), interpolation=cv2.INTER_AREA)
    if config.rotate:
        image = cv2.rotate(image, _ROTATIONS[config.rotate])
    if config.flip != "none":
        image = cv2.flip(image, _FLIPS[config.flip])
    if config.crop:
        c = config.crop
        image = image[c.y : c.y + c.height, c.x : c.x + c.width]
        if image.size == 0:
            raise SourceError(f"crop {c.x},{c.y} {c.width}x{c.height} lies outside the frame", permanent=True)
    return np.ascontiguousarray(image)


def default_opener(config: CameraConfig) -> FrameSource:
    """Open the configured source."""
    return open_frame_source(
        config.source,
        config.width,
        config.height,
        config.open_timeout_s,
        config.read_timeout_s,
        label=f"camera {config.name}",
    )


@dataclass
class Camera:
    """Runs one camera until `stop` is set; `on_frame` gets each frame that passes the fps cap."""

    config: CameraConfig
    on_frame: Callable[[Frame], None]
    opener: Opener = default_opener
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=1.0, maximum_s=30.0, healthy_after_s=30.0))
    on_status: Callable[[CameraStatus], None] | None = None
    status: CameraStatus = field(init=False)
    _index: int = field(default=0, init=False)
    # wraps each open, read and close: the systemd watchdog counts one that never returns as a stalled stage
    busy: Callable[[str], AbstractContextManager[object]] = lambda _stage: nullcontext()
    _source: FrameSource | None = field(default=None, init=False)  # the open source, for interrupt() on stop
    _failures: int = field(default=0, init=False)  # attempts in a row that ended without a frame

    def __post_init__(self) -> None:
        self.status = CameraStatus(self.config.name)

    def _set(self, *, retrying: bool = False, **changes: object) -> None:
        """Change the status; a new state (or a new reason while not `ok`) is reported and logged."""
        old = self.status
        self.status = new = replace(old, **changes)  # type: ignore[arg-type]
        troubled = new.state in ("reconnecting", "failed")
        if new.state == old.state and not (troubled and new.last_error != old.last_error):
            return
        if self.on_status is not None:
            self.on_status(new)
        level = logging.WARNING if troubled and new.state != old.state else logging.INFO  # a new reason: INFO
        why = f" ({new.last_error})" if troubled and new.last_error else ""
        retry = ", still retrying" if retrying and new.state == "failed" else ""
        log.log(level, "camera %s: %s%s%s", self.config.name, new.state, why, retry)

    def run(self, stop: threading.Event) -> None:
        """Blocking, on the caller's thread (the daemon gives each camera a thread of its own): until the camera
        ends, fails for good or `stop` is set. A source blocked in open or read returns at its timeout, or at once
        after `interrupt()` where that can be done (an `exec:` command)."""
        self._loop(stop)

    def interrupt(self) -> None:
        """From another thread: make the open source return now if it can (an `exec:` command is stopped)."""
        source = self._source
        if source is not None:
            interrupt(source)

    def blocked(self) -> str:
        """What the camera's thread is doing when a stop had to leave it behind."""
        what = "opening" if self._source is None else "reading"
        return f"camera {self.config.name}: {what} {self.config.source}"

    def _loop(self, stop: threading.Event) -> None:
        """Open, read, and on failure retry with backoff (permanent errors end in `failed`)."""
        stage = f"camera {self.config.name}"
        while not stop.is_set():
            started = time.monotonic()
            try:
                with self.busy(stage):
                    self._source = source = self.opener(self.config)
            except SourceError as exc:
                if exc.permanent:
                    self._set(state="failed", last_error=str(exc))
                    return
                self._retry(stop, str(exc), time.monotonic() - started)
                continue
            try:
                ended = self._read(source, stop)
            except SourceError as exc:
                if exc.permanent:
                    self._set(state="failed", last_error=str(exc))
                    return
                ended, reason = False, str(exc)
            else:
                reason = "the stream ended"
            finally:
                self._source = None
                with self.busy(stage):
                    source.close()
            if stop.is_set():
                return
            if ended and not source.live:
                if not self.config.loop:
                    self._set(state="ended")
                    return
                continue  # a file: play it again from the start
            self._retry(stop, reason, time.monotonic() - started)

    def _retry(self, stop: threading.Event, reason: str, ran_for_s: float) -> None:
        delay = self.backoff.delay(ran_for_s)
        self._failures += 1
        state = "failed" if self._failures >= FAILED_AFTER_ATTEMPTS else "reconnecting"
        self._set(state=state, reconnects=self.status.reconnects + 1, last_error=reason, retrying=True)
        log.debug("camera %s: retrying in %.1f s", self.config.name, delay)
        stop.wait(delay)

    def _read(self, source: FrameSource, stop: threading.Event) -> bool:
        """Read frames until the source ends (True) or `stop` is set (False)."""
        interval = 1.0 / self.config.fps
        native = getattr(source, "native_fps", 0.0)
        file_interval = 1.0 / native if native else interval
        next_emit = file_due = time.monotonic()
        stage = f"camera {self.config.name}"
        while not stop.is_set():
            with self.busy(stage):
                if not source.grab():
                    return True
            if not source.live:  # play files in real time, as a camera would deliver them
                file_due = pace(file_due, file_interval)
            now = time.monotonic()
            if now < next_emit:
                continue
            with self.busy(stage):
                image = transform(source.retrieve(), self.config)
            next_emit = max(next_emit + interval, now - interval)
            self._index += 1
            self._failures = 0
            if self.status.state != "ok":
                self._set(state="ok", last_error=None)
            self._set(frames=self.status.frames + 1)
            self.on_frame(Frame(self.config.name, image, self._index, time.time(), now))
        return False


class LatestFrame:
    """Holds only the newest frame of a camera; async readers wait for one they have not taken yet."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._taken = 0  # index of the last frame handed out by take()
        self._changed = asyncio.Event()
        self.dropped = 0  # frames replaced before anyone took them

    def put(self, frame: Frame) -> None:
        """Replace the held frame (from any thread)."""
        with self._lock:
            if self._frame is not None and self._frame.index > self._taken:
                self.dropped += 1
            self._frame = frame
        self._loop.call_soon_threadsafe(self._changed.set)

    def latest(self) -> Frame | None:
        """The newest frame, taken or not (for snapshots)."""
        with self._lock:
            return self._frame

    async def take(self) -> Frame:
        """Wait for a frame newer than the last one taken, and take it."""
        while True:
            with self._lock:
                frame = self._frame
                if frame is not None and frame.index > self._taken:
                    self._taken = frame.index
                    return frame
                self._changed.clear()
            await self._changed.wait()
