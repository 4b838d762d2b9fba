"""Where the spool lives, and the spool the config asks for."""

from __future__ import annotations

import os
from pathlib import Path

from edge_agent.config import MqttConfig
from edge_agent.sinks.spool import Spool


def default_spool_path() -> Path:
    """$STATE_DIRECTORY/spool.db under systemd, else ~/.local/state/edge-agent/spool.db."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) / "spool.db" if state else Path.home() / ".local/state/edge-agent/spool.db"


def open_spool(config: MqttConfig) -> Spool:
    """The spool the config asks for (opened and checked; it falls back to memory rather than fail)."""
    path = config.spool_path or default_spool_path()
    max_bytes = int(config.spool_max_mb * 2**20)
    return Spool(path, config.spool_max_messages, config.spool_max_age_h * 3600, config.spool_fsync, max_bytes)
