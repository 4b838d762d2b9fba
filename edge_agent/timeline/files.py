"""Snapshots kept beside the timeline database: the JPEG as published and a small thumbnail, by entry time."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

SNAPSHOTS = "snapshots"


def thumbnail(jpeg: bytes, longest_px: int, quality: int) -> bytes | None:
    """A JPEG at most `longest_px` on its longest side (None when `jpeg` is not a readable image)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    height, width = image.shape[:2]
    scale = longest_px / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes() if ok else None


def _write(path: Path, data: bytes) -> None:
    """Write a file whole (to a temporary name, then renamed): a full disk never leaves half a JPEG."""
    partial = path.with_name(path.name + ".part")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def save_snapshot(root: Path, ts: float, jpeg: bytes, longest_px: int, quality: int) -> tuple[str, str | None, int]:
    """Store a snapshot and its thumbnail under `snapshots/<day>/`: (snapshot, thumbnail or None, bytes written),
    paths relative to `root`; OSError when the disk refuses."""
    day = time.strftime("%Y-%m-%d", time.localtime(ts))
    name = time.strftime("%H%M%S", time.localtime(ts)) + "-" + uuid.uuid4().hex[:8]
    folder = root / SNAPSHOTS / day
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / f"{name}.jpg", jpeg)
    small = thumbnail(jpeg, longest_px, quality)
    if small is None:
        return f"{SNAPSHOTS}/{day}/{name}.jpg", None, len(jpeg)
    _write(folder / f"{name}.thumb.jpg", small)
    return f"{SNAPSHOTS}/{day}/{name}.jpg", f"{SNAPSHOTS}/{day}/{name}.thumb.jpg", len(jpeg) + len(small)


def remove_files(root: Path, names: list[str | None]) -> None:
    """Delete snapshot files (a missing one is fine), then their day folders once empty."""
    folders = set()
    for name in names:
        if name:
            path = root / name
            with contextlib.suppress(OSError):
                path.unlink()
            folders.add(path.parent)
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def read_file(root: Path, name: str) -> bytes | None:
    """A stored file's bytes (None when it is gone or unreadable); never outside `root`."""
    path = (root / name).resolve()
    if root.resolve() not in path.parents:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None
