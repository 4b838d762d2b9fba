"""Progress of a pull: bytes checked in place, downloaded and verified, with the total, speed and ETA of each stage.

A pull reports to a `PullProgress` (the base class is silent); `TerminalProgress` writes one updating line on
stderr on a terminal, and a few plain lines (a quarter at a time) otherwise, e.g. in a journal or an Ansible log.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

BLOCK = 1 << 20
IDLE_S = 5.0
CHECKING = "checking the files in place"  # before a pull: which files can stay, is the model up to date
DOWNLOADING = "downloading"
VERIFYING = "verifying checksums"


class PullProgress:
    """What a pull reports; this base class ignores it all (a pull without output, e.g. from Python)."""

    def stage(self, name: str, total: int) -> None:
        """A stage begins (again): `total` bytes will go through it."""

    def advance(self, name: str, path: str, done: int) -> None:
        """`done` bytes of the file at `path` have gone through stage `name` so far."""

    def warn(self, text: str) -> None:
        """A warning the user must see (once)."""
        print(f"warning: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """The pull is over: end the line being rewritten."""


QUIET = PullProgress()


def hash_into(
    path: Path, digests: list[hashlib._Hash], on_bytes: Callable[[int], None] | None = None, limit: int | None = None
) -> None:
    """Feed the file (its first `limit` bytes) to every digest in 1 MiB blocks, reporting the bytes read so far."""
    done = 0
    with path.open("rb") as handle:
        left = path.stat().st_size if limit is None else limit
        while left > 0 and (block := handle.read(min(BLOCK, left))):
            for digest in digests:
                digest.update(block)
            left -= len(block)
            done += len(block)
            if on_bytes is not None:
                on_bytes(done)


def human_bytes(count: float) -> str:
    """1.2 GB, 340.0 MB, 12.0 kB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def human_seconds(seconds: float) -> str:
    """1h02m, 3m07s, 42s."""
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class _Stage:
    """Bytes through one stage: per file (a resumed download reports from its start), in total, since when."""

    total: int
    files: dict[str, int] = field(default_factory=dict)
    shown_quarter: int = -1
    active_s: float = 0.0  # time spent in this stage (a pause of more than IDLE_S between reports is not counted)
    last: float | None = None
    base: int = 0  # bytes counted at the first report, before any time was measured

    def count(self, path: str, done: int, now: float) -> None:
        """Bytes of `path` so far, at time `now`."""
        if self.last is not None and now - self.last < IDLE_S:
            self.active_s += now - self.last
        elif self.last is not None:
            self.base += done - self.files.get(path, 0)  # after a pause: this block's time is not known
        self.files[path] = done
        if self.last is None:
            self.base = self.done
        self.last = now

    @property
    def done(self) -> int:
        return sum(self.files.values())


class TerminalProgress(PullProgress):
    """Stages as `downloading 1.2 GB of 3.0 GB (40%), 11.3 MB/s, about 2m41s left: onnx/...` on stderr."""

    def __init__(
        self, stream: TextIO | None = None, tty: bool | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.stages: dict[str, _Stage] = {}
        self.last_draw = 0.0
        self.open_line = False

    def stage(self, name: str, total: int) -> None:
        """Start counting `name` from zero."""
        self.stages[name] = _Stage(total)

    def advance(self, name: str, path: str, done: int) -> None:
        """Count, and redraw (at most 5 times a second on a terminal; each quarter otherwise)."""
        now = self.clock()
        stage = self.stages.setdefault(name, _Stage(0))
        stage.count(path, done, now)
        finished = stage.done >= stage.total
        if self.tty:
            if finished or now - self.last_draw >= 0.2:
                self.last_draw = now
                self._write(f"\r\x1b[K{self.line(name, path)}", end="")
                self.open_line = True
            return
        quarter = 4 if finished else 4 * stage.done // max(stage.total, 1)
        if quarter > stage.shown_quarter:
            stage.shown_quarter = quarter
            self._write(self.line(name, path))

    def line(self, name: str, path: str) -> str:
        """What the progress line says about stage `name` now."""
        stage = self.stages[name]
        done, total = stage.done, max(stage.total, stage.done)
        percent = 100 * done // total if total else 100
        text = f"{name} {human_bytes(done)} of {human_bytes(total)} ({percent}%)"
        if stage.active_s >= 0.5 and done > stage.base:
            speed = (done - stage.base) / stage.active_s
            text += f", {human_bytes(speed)}/s"
            if done < total:
                text += f", about {human_seconds((total - done) / speed)} left"
        return f"{text}: {path}" if done < total else text

    def warn(self, text: str) -> None:
        """On its own line, never overwritten."""
        self.close()
        self._write(f"warning: {text}")

    def close(self) -> None:
        """End the rewritten line."""
        if self.open_line:
            self._write("")
            self.open_line = False

    def _write(self, text: str, end: str = "\n") -> None:
        print(text, end=end, file=self.stream, flush=True)
