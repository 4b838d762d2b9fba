"""What a timeline query asks for: filters by time, kind, task, camera and text, a limit, and optionally a question
to answer from the matching entries. The same request comes from the CLI, MQTT and HTTP."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_agent.timeline.entries import KINDS

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
NAME = r"^[a-zA-Z0-9_-]+$"


def parse_time(value: str | float | int, now: float | None = None) -> float:
    """A wall time from `24h`/`30m`/`7d`/`90s`/`2w` (that long ago), `now`, seconds since the epoch or an ISO 8601
    time (local time when it has no offset); ValueError saying what is accepted."""
    now = time.time() if now is None else now
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    relative = _RELATIVE.match(text)
    if relative:
        return now - float(relative.group(1)) * _UNIT_S[relative.group(2).lower()]
    if text.lower() == "now":
        return now
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(f"cannot read {shown!r} as a time: use 24h, 30m, 7d, an ISO time or epoch seconds") from None


class TimelineQuery(BaseModel):
    """A query of the timeline (the JSON of `timeline/query`, the parameters of `GET /api/timeline`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, min_length=1, max_length=128, description="Echoed in the reply.")
    since: str | float | None = Field(default=None, description="From this time: 24h, 30m, 7d, ISO or epoch.")
    until: str | float | None = Field(default=None, description="Up to this time: same forms as since.")
    kind: list[str] | None = Field(default=None, max_length=len(KINDS), description="Only these kinds.")
    task: str | None = Field(default=None, pattern=NAME, max_length=64, description="Only this task.")
    camera: str | None = Field(default=None, pattern=NAME, max_length=64, description="Only this camera.")
    grep: str | None = Field(default=None, min_length=1, max_length=200, description="Text the summary contains.")
    limit: int | None = Field(default=None, ge=1, description="Most entries returned (newest first).")
    question: str | None = Field(default=None, min_length=1, max_length=2000, description="Answer this from them.")
    images: bool = Field(default=False, description="Show the model a thumbnail or two with the question.")

    @field_validator("kind", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            unknown = [kind for kind in value if kind not in KINDS]
            if unknown:
                raise ValueError(f"unknown kind {unknown[0]!r}; one of {', '.join(KINDS)}")
        return value

    @field_validator("since", "until")
    @classmethod
    def _time(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_time(value)  # refused now, with the reason
        return value

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty or only whitespace")
        return value

    def window(self, now: float | None = None) -> tuple[float | None, float | None]:
        """(since, until) as wall times."""
        since = parse_time(self.since, now) if self.since is not None else None
        until = parse_time(self.until, now) if self.until is not None else None
        return since, until

    def where(self, now: float | None = None) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters."""
        since, until = self.window(now)
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (("ts", ">=", since), ("ts", "<=", until), ("task", "=", self.task)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        if self.camera is not None:
            clauses.append("camera = ?")
            params.append(self.camera)
        if self.kind:
            clauses.append(f"kind IN ({', '.join('?' * len(self.kind))})")
            params.extend(self.kind)
        if self.grep is not None:
            escaped = self.grep.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("text LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        return (" AND ".join(clauses) or "1"), params
