"""The spool file: the same integrity check the node runs when it opens it."""

from __future__ import annotations

from pathlib import Path

from edge_agent.doctor.check import Check, ok, warn
from edge_agent.sinks.spool_db import inspect


def check_spool(path: Path) -> Check:
    """`PRAGMA quick_check` on the spool, read-only: a corrupt file is moved aside by the node at its next start
    (its results are then not delivered), so it is a warning, not a failure."""
    if not path.exists():
        return ok("spool", f"{path}: not created yet (the node creates it)")
    found = inspect(path)
    if found.corrupt:
        return warn(
            "spool",
            f"{path}: corrupt ({found.problem}); the node moves it aside to {path.name}.corrupt-<time> at start and "
            "begins a fresh spool, delivering what can still be read from it",
        )
    if found.problem is not None:
        return warn("spool", f"{path}: cannot check it: {found.problem}")
    size = found.payload_bytes / 2**20
    return ok("spool", f"{path}: integrity ok; {found.depth} result(s) waiting ({size:.1f} MB)")
