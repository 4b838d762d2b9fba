"""The local timeline: every answer, motion event, utterance and tool call the node publishes, kept in SQLite (WAL)
with retention by age and bytes, snapshots as JPEG files with thumbnails, and queries by time, kind, task, camera
and text."""

from edge_agent.timeline.entries import Entry, entry_from_result
from edge_agent.timeline.query import TimelineQuery, parse_time
from edge_agent.timeline.store import TimelineStore, database_path, timeline_dir
from edge_agent.timeline.writer import Timeline

__all__ = [
    "Entry",
    "Timeline",
    "TimelineQuery",
    "TimelineStore",
    "database_path",
    "entry_from_result",
    "parse_time",
    "timeline_dir",
]
