"""One line of the doctor's report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """A named check with its verdict and a one-line explanation."""

    name: str
    verdict: Verdict
    detail: str


def ok(name: str, detail: str) -> Check:
    """A passed check."""
    return Check(name, "ok", detail)


def warn(name: str, detail: str) -> Check:
    """A check that passed with something to look at."""
    return Check(name, "warn", detail)


def fail(name: str, detail: str) -> Check:
    """A failed check: the node will not work as configured."""
    return Check(name, "fail", detail)
