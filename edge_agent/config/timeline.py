"""The `timeline` section: the local record of answers, motion, utterances and tool calls."""

from __future__ import annotations

from pydantic import Field

from edge_agent.config.base import AnyPath, Section


class TimelineConfig(Section):
    """Where and for how long the node keeps its timeline of events."""

    enabled: bool = Field(default=True, description="Record answers, motion, utterances and tool calls.")
    path: AnyPath | None = Field(
        default=None, description="Directory of the timeline database and its snapshots; default: next to the spool."
    )
