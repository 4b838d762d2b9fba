"""A real mosquitto broker on a free loopback port, started and stopped by pid."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def wait_for_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> None:
    """Block until `port` accepts connections, or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


@dataclass
class Mosquitto:
    """One mosquitto process with its own config file; `stop()`/`start()` simulate an outage."""

    binary: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    extra_config: str = ""
    persistent: bool = False  # keep sessions and queued messages across restarts
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        """The config file this broker runs with."""
        return self.workdir / "mosquitto.conf"

    def start(self) -> None:
        """Start the broker (again) on the same port and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        persistence = (
            f"persistence true\npersistence_location {self.workdir}/\n" if self.persistent else "persistence false\n"
        )
        # started as root, mosquitto would switch to the 'mosquitto' user and could not write its files here
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        self.config_file.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{user}{persistence}"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n{self.extra_config}"
        )
        self.process = subprocess.Popen(
            [str(self.binary), "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            log = (self.workdir / "mosquitto.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{log}") from None

    def stop(self) -> None:
        """Stop the broker process by its pid."""
        if self.process is None:
            return
        terminate(self.process)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self.process is not None and self.process.poll() is None
