"""A fake systemd notify socket's side: sd_notify datagrams read until the one a test waits for."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def receive_until(sock: socket.socket, wanted: str | Callable[[str], bool], timeout_s: float = 30.0) -> list[str]:
    """Datagrams received until one contains `wanted` (or satisfies it, for a predicate)."""
    matches = wanted if callable(wanted) else lambda message: wanted in message
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if matches(got[-1]):
            return got
    raise AssertionError(f"no {wanted!r} from the daemon; got {got}")
