"""Each camera's newest event (an answer about it, motion starting, a clip) on its retained `last_event` topic."""

from __future__ import annotations

import json
import logging

from edge_agent.sinks.mqtt import MqttLink
from edge_agent.timeline import Entry
from edge_agent.timeline.entries import entry_from_result

log = logging.getLogger("edge_agent.app")
SUMMARY_MAX = 250  # Home Assistant's sensor state holds 255 characters


def summary(entry: Entry) -> str | None:
    """The one line a camera's `last event` sensor shows; None for what is not worth showing (motion stopping)."""
    if entry.kind == "motion":
        return "motion" if entry.payload.get("motion") is True else None
    if entry.kind in ("answer", "ask", "voice"):
        return f"{entry.task}: {entry.text}" if entry.task and entry.kind != "ask" else entry.text
    return None


class LastEvents:
    """Fed each spooled result (`MqttLink.on_spooled`): publishes `camera/<name>/last_event` retained."""

    def __init__(self, link: MqttLink, cameras: set[str]) -> None:
        self.link, self.cameras = link, cameras

    def __call__(self, suffix: str, body: bytes, created: float) -> None:
        """A result the link spooled; one about a configured camera becomes its last event."""
        entry = entry_from_result(suffix, body, created)
        if entry is None or entry.camera not in self.cameras:
            return
        line = summary(entry)
        if line is None:
            return
        event = {
            "ts": round(entry.ts, 3),
            "kind": entry.kind,
            "task": entry.task,
            "camera": entry.camera,
            "summary": line[:SUMMARY_MAX],
            "topic": self.link.topic(suffix),
        }
        self.link.publish_state(f"camera/{entry.camera}/last_event", json.dumps(event))
