"""`edge-agent run` as a real subprocess, with its log lines collected as they come."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class Daemon:
    """The daemon with a config file; `lines` holds (monotonic time, stderr line) pairs."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, argv: list[str] | None = None) -> None:
        self.lines: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            argv or [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._changed.notify_all()

    def wait_for_lines(self, text: str, count: int = 1, timeout_s: float = 60.0) -> list[tuple[float, str]]:
        """Block until `count` log lines contain `text`; AssertionError on timeout or exit."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [(t, line) for t, line in self.lines if text in line]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                tail = "\n".join(line for _, line in self.lines[-15:])
                assert left > 0, f"no {count} lines with {text!r} after {timeout_s} s; log:\n{tail}"
                self._changed.wait(min(left, 0.5))

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then the exit code."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self._reader.join(timeout=5)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no `offline` sent by the daemon itself."""
        self.process.kill()
        self.process.wait()
        self._reader.join(timeout=5)
