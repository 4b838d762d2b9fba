"""Timeline entries, and the entry a published result becomes (by its topic suffix)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

KINDS = ("answer", "ask", "voice", "motion", "utterance", "tool_call", "error")


@dataclass(frozen=True)
class Entry:
    """One event: when (wall time), what kind, which task and camera, a text summary and the JSON payload."""

    ts: float
    kind: str
    text: str
    task: str | None = None
    camera: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    snapshot: bytes | None = None  # a JPEG kept as a file beside the database, with a thumbnail
    id: int | None = None  # set once stored
    snapshot_file: str | None = None  # relative to the timeline directory, once stored
    thumbnail_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """For MQTT, HTTP and `edge-agent timeline --json`."""
        return {
            "id": self.id,
            "ts": round(self.ts, 3),
            "time": format_time(self.ts),
            "kind": self.kind,
            "task": self.task,
            "camera": self.camera,
            "text": self.text,
            "payload": self.payload,
            "snapshot": self.snapshot_file,
            "thumbnail": self.thumbnail_file,
        }


def format_time(ts: float) -> str:
    """Local time with its UTC offset, to the second: `2026-12-07T19:30:05+0100`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _task_result(task: str, body: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of a `task/<name>` result: a watch answer's value, or a voice command's transcript and answer."""
    if body.get("trigger") == "voice":
        heard, answer = body.get("transcript"), body.get("answer")
        calls = ", ".join(str(c.get("tool")) for c in body.get("tool_calls") or () if isinstance(c, dict))
        parts = [f"heard: {_shown(heard)}" if heard else "", f"answer: {_shown(answer)}" if answer else ""]
        parts.append(f"tools: {calls}" if calls else "")
        return "voice", "; ".join(part for part in parts if part) or f"voice task {task}"
    return "answer", _shown(body.get("value"))


def _describe(suffix: str, body: dict[str, Any]) -> tuple[str, str, str | None, str | None] | None:
    """(kind, text, task, camera) of a result published on `<base>/<suffix>`, or None when it is not an event."""
    parts = suffix.split("/")
    camera = _text(body.get("camera"))
    if parts[0] == "task" and len(parts) == 2:
        kind, text = _task_result(parts[1], body)
        return kind, text, parts[1], camera
    if parts[0] == "task" and len(parts) == 3 and parts[2] == "error":
        return "error", _shown(body.get("error")), parts[1], camera
    if parts[0] == "motion" and len(parts) == 2:
        moving = body.get("motion") is True
        area = body.get("area")
        text = f"motion started (area {area})" if moving else "motion stopped"
        return "motion", text, None, parts[1]
    if suffix == "utterance":
        start, end = body.get("start_s"), body.get("end_s")
        seconds = end - start if isinstance(start, (int, float)) and isinstance(end, (int, float)) else None
        length = f" of {seconds:.1f} s" if seconds is not None else ""
        return "utterance", f"utterance{length} ({_shown(body.get('reason'))})", None, None
    if suffix == "tools/audit":
        text = f"{_shown(body.get('tool'))} {_shown(body.get('status'))}: {_shown(body.get('arguments'))}"
        if body.get("error"):
            text += f" ({_shown(body.get('error'))})"
        return "tool_call", text, _text(body.get("task")), None
    return None


def entry_from_result(suffix: str, body: bytes, created: float) -> Entry | None:
    """The entry a published JSON result becomes (None for what is not an event: state, snapshots, availability)."""
    parts = suffix.split("/")
    if parts[0] not in ("task", "motion", "utterance", "tools") or body[:1] != b"{":
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    described = _describe(suffix, value)
    if described is None:
        return None
    kind, text, task, camera = described
    ts = value.get("ts")
    when = float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else created
    return Entry(when, kind, text, task, camera, value)
