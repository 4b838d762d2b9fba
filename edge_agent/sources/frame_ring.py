"""A camera's recent frames for clip questions: downscaled, JPEG-compressed in memory, bounded in seconds and bytes.

Capture threads `offer` every frame they deliver; the ring keeps one at most every 1/fps seconds (the encoding is
done on the capture thread, outside the lock), drops the oldest first, and never counts more than `max_bytes`
(each entry counts its JPEG plus a fixed allowance for the Python objects around it). The loop reads a time window
(`window`) and decodes only the frames it uses (`decode`)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.messages import Frame

log = logging.getLogger(__name__)
ENTRY_OVERHEAD_BYTES = 200  # the bytes object's header, the StoredFrame and the deque slot of one entry


@dataclass(frozen=True)
class StoredFrame:
    """One kept frame: its JPEG and when it was captured (wall clock and monotonic), and its camera index."""

    camera: str
    index: int
    captured_at: float
    monotonic: float
    jpeg: bytes

    @property
    def cost(self) -> int:
        """The bytes this entry counts against the ring's bound."""
        return len(self.jpeg) + ENTRY_OVERHEAD_BYTES


def scaled_jpeg(image: np.ndarray, width: int, quality: int) -> bytes | None:
    """A JPEG of `image` scaled down to at most `width` pixels wide (None if it cannot be encoded)."""
    if image.shape[1] > width:
        height = max(1, round(image.shape[0] * width / image.shape[1]))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes() if ok else None


def encode_frame(frame: Frame, width: int, quality: int) -> StoredFrame | None:
    """`frame` scaled down to at most `width` pixels wide and JPEG-encoded (None if it cannot be encoded)."""
    image = frame.image
    if image is None or image.size == 0:
        return None
    jpeg = scaled_jpeg(image, width, quality)
    if jpeg is None:
        return None
    return StoredFrame(frame.camera, frame.index, frame.captured_at, frame.monotonic, jpeg)


def decode(stored: StoredFrame) -> np.ndarray:
    """The BGR image of a kept frame."""
    image = cv2.imdecode(np.frombuffer(stored.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"camera {stored.camera}: kept frame {stored.index} cannot be decoded")
    return image


class FrameRing:
    """Recent frames of one camera, oldest first; thread-safe (capture threads offer, the loop reads)."""

    def __init__(self, seconds: float, fps: float, max_bytes: int, width: int = 640, quality: int = 80) -> None:
        if seconds <= 0 or fps <= 0 or max_bytes <= 0:
            raise ValueError("a frame ring needs positive seconds, fps and max_bytes")
        self.seconds, self.fps, self.max_bytes, self.width, self.quality = seconds, fps, max_bytes, width, quality
        self._lock = threading.Lock()
        self._frames: deque[StoredFrame] = deque()
        self._bytes = 0
        self._next_due: float | None = None  # monotonic time from which the next frame is kept
        self.dropped = 0  # frames pushed out by the seconds or bytes bound
        self.refused = 0  # frames larger than the whole bound, or that could not be encoded

    @property
    def bytes(self) -> int:
        """Bytes counted now (never more than max_bytes)."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def keep_seconds(self, seconds: float) -> None:
        """Keep at least `seconds` of frames from now on (a task that needs a longer clip)."""
        with self._lock:
            self.seconds = max(self.seconds, seconds)

    def offer(self, frame: Frame) -> bool:
        """From a capture thread: keep `frame` if one is due at the ring's rate (True when kept)."""
        interval = 1.0 / self.fps
        with self._lock:
            due = self._next_due
            if due is not None and frame.monotonic < due:
                return False
            # steady 1/fps steps (late frames do not shift the grid); after a gap of more than a step, a new grid
            # from this frame, so that no burst follows to catch up
            late = due is None or frame.monotonic - due >= interval
            self._next_due = frame.monotonic + interval if late or due is None else due + interval
        stored = encode_frame(frame, self.width, self.quality)
        if stored is None:
            self.refused += 1
            return False
        return self.put(stored)

    def put(self, stored: StoredFrame) -> bool:
        """Keep an encoded frame, dropping the oldest until it fits; False if it alone exceeds the bound."""
        cost = stored.cost
        with self._lock:
            if cost > self.max_bytes:
                self.refused += 1
                refused = self.refused
            else:
                refused = 0
                oldest_kept = stored.monotonic - self.seconds
                while self._frames and (self._bytes + cost > self.max_bytes or self._frames[0].monotonic < oldest_kept):
                    self._bytes -= self._frames.popleft().cost
                    self.dropped += 1
                self._frames.append(stored)
                self._bytes += cost
        if refused == 1:
            log.warning(
                "camera %s: a %d-byte frame is larger than the whole clip buffer (%d bytes); raise max_mb or lower "
                "width or jpeg_quality",
                stored.camera,
                cost,
                self.max_bytes,
            )
        return refused == 0

    def window(self, start: float, end: float) -> list[StoredFrame]:
        """The kept frames captured from monotonic `start` to `end` (inclusive), oldest first."""
        with self._lock:
            return [f for f in self._frames if start <= f.monotonic <= end]

    def newest(self) -> StoredFrame | None:
        """The newest kept frame."""
        with self._lock:
            return self._frames[-1] if self._frames else None
