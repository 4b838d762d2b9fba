"""SIGHUP and the health section: thresholds apply live, what is read only at start asks for a restart."""

from __future__ import annotations

from pathlib import Path

from edge_agent.app.reload import sections_needing_restart
from edge_agent.config import Config

REPO = Path(__file__).resolve().parents[2]


def config(**health: object) -> Config:
    return Config.model_validate({"model": {"path": str(REPO / "models" / "tiny-gemma4")}, "health": health})


def test_health_thresholds_are_live_and_start_time_fields_are_named() -> None:
    base = config()
    assert sections_needing_restart(base, config(memory_low_mb=800, cooldown_s=30, interval_s=2)) == []
    assert sections_needing_restart(base, config(prometheus_port=9100, watchdog_stall_s=60)) == [
        "health.prometheus_port",
        "health.watchdog_stall_s",
    ]
    renamed = base.model_copy(update={"device": base.device.model_copy(update={"id": "x"})})
    assert sections_needing_restart(base, renamed) == ["device"]
