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
    max_age_days: float = Field(
        default=30.0, gt=0, le=3650, description="Entries (and their snapshots) older than this are deleted."
    )
    max_mb: float = Field(
        default=512.0,
        ge=1,
        le=1_000_000,
        description="Most disk the timeline may take (database and snapshot files); the oldest entries go first.",
    )
    snapshots: bool = Field(default=True, description="Keep the snapshots published with answers, as JPEG files.")
    thumbnail_px: int = Field(
        default=160, ge=16, le=1024, description="Longest side of the thumbnail kept beside each snapshot, pixels."
    )
    thumbnail_quality: int = Field(default=70, ge=10, le=100, description="JPEG quality of the thumbnails.")
    retention_every: int = Field(
        default=200, ge=1, le=100_000, description="Enforce the retention bounds after this many new entries."
    )
    retention_interval_s: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="Enforce the retention bounds at least this often while entries arrive, seconds.",
    )
    max_text_chars: int = Field(
        default=1000, ge=16, le=100_000, description="Longest text summary stored for an entry, characters."
    )
    max_payload_bytes: int = Field(
        default=16384, ge=256, le=1 << 20, description="Largest JSON payload stored with an entry (larger: cut)."
    )
    query_limit: int = Field(
        default=500, ge=1, le=100_000, description="Most entries one query (CLI, MQTT, HTTP) returns."
    )
    query_max_bytes: int = Field(
        default=8192, ge=256, le=1 << 20, description="Largest `timeline/query` request accepted, bytes."
    )
    prompt_entries: int = Field(
        default=30, ge=1, le=1000, description="Most entries put into the prompt of a question about the past."
    )
    prompt_chars: int = Field(
        default=4000, ge=200, le=200_000, description="Most characters of entries put into that prompt."
    )
    prompt_images: int = Field(
        default=2, ge=0, le=8, description="Most thumbnails shown to the model when a question asks for images."
    )
