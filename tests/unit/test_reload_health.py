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


def test_reference_images_apply_live_and_the_timeline_asks_for_a_restart(tmp_path: Path) -> None:
    base = config()
    picture = REPO / "tests" / "data" / "vision" / "landscape_640x360.png"
    model = {"path": str(REPO / "models" / "tiny-gemma4")}
    with_reference = Config.model_validate({"model": model, "references": [{"name": "rex", "image": str(picture)}]})
    assert sections_needing_restart(base, with_reference) == []
    moved = Config.model_validate({"model": model, "timeline": {"path": str(tmp_path)}})
    assert sections_needing_restart(base, moved) == ["timeline"]
