"""Resident memory of this process by stage (a sampler thread) and by mapping (anonymous vs each mapped file).

Used by bench/generate.py's worker: RSS after loading, the highest RSS seen during prefill and during decode (sampled
every 20 ms from /proc/self/status; the stage boundary is the time to first token), and at the end the resident
bytes of /proc/self/smaps split into anonymous memory and each mapped file (weights memory-mapped by onnxruntime).
Linux only: elsewhere every figure is None.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

MB = 1e6


def rss_bytes() -> int | None:
    """Resident bytes of this process now (VmRSS), None where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def resident_by_mapping(top: int = 6) -> dict[str, Any]:
    """Resident MB now: anonymous, file-backed, and the `top` files with the most resident pages."""
    try:
        text = Path("/proc/self/smaps").read_text()
    except OSError:
        return {}
    by_file: dict[str, int] = {}
    anonymous = total = 0
    name = ""
    for line in text.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            name = " ".join(fields[5:]) if len(fields) > 5 else ""
        elif fields[0] == "Rss:":
            total += int(fields[1]) * 1024
            if name.startswith("/") and ".so" not in Path(name).name:  # weight files, not shared libraries
                by_file[name] = by_file.get(name, 0) + int(fields[1]) * 1024
        elif fields[0] == "Anonymous:":
            anonymous += int(fields[1]) * 1024
    files = [(path, size) for path, size in sorted(by_file.items(), key=lambda kv: -kv[1])[:top] if size >= MB]
    return {
        "anonymous_mb": anonymous / MB,
        "file_backed_mb": (total - anonymous) / MB,
        "files_mb": {Path(path).name: size / MB for path, size in files},
    }


class RssSampler:
    """Samples VmRSS every `interval` seconds on a thread until stopped; stage peaks from the samples' times."""

    def __init__(self, interval: float = 0.02) -> None:
        self.samples: list[tuple[float, int]] = []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_bytes()
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, start: float, end: float) -> float | None:
        """The highest sampled RSS between two monotonic times, in MB (None: no sample in that span)."""
        values = [value for when, value in self.samples if start <= when <= end]
        return max(values) / MB if values else None
