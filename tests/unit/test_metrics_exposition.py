"""The Prometheus exposition leaves out what the node could not measure instead of reporting it as 0."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from edge_agent.sinks.metrics import HealthCollector


def exposition(collector: HealthCollector) -> list[str]:
    """The sample lines (no comments) a scrape would get."""
    registry = CollectorRegistry()
    registry.register(collector)
    return [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]


def test_unknown_values_are_absent_and_known_ones_scaled() -> None:
    collector = HealthCollector()
    collector.report = {"temperature_c": None, "gpu_load_pct": None, "memory_available_mb": 512, "throttled_now": None}
    collector.degradation_level, collector.cameras = 0, {"door": "ok", "yard": "reconnecting"}
    lines = exposition(collector)
    assert "edge_agent_memory_available_bytes 5.36870912e+08" in lines
    assert "edge_agent_degradation_level 0.0" in lines
    assert 'edge_agent_camera_up{camera="door"} 1.0' in lines and 'edge_agent_camera_up{camera="yard"} 0.0' in lines
    names = {line.split("{")[0].split(" ")[0] for line in lines}
    assert not names & {"edge_agent_temperature_celsius", "edge_agent_gpu_load_percent", "edge_agent_throttled"}
    assert "edge_agent_swap_used_bytes" not in names  # missing from the report altogether


def test_a_value_that_becomes_unknown_disappears_and_booleans_are_not_numbers() -> None:
    collector = HealthCollector()
    collector.report = {"temperature_c": 51.5, "load_1m": True, "throttled_now": ["under_voltage"]}
    lines = exposition(collector)
    assert "edge_agent_temperature_celsius 51.5" in lines
    assert 'edge_agent_throttled{flag="under_voltage"} 1.0' in lines
    assert not any(line.startswith("edge_agent_load_1m") for line in lines)
    collector.report = {"temperature_c": None}
    assert exposition(collector) == []  # no level, no cameras, nothing known: an empty exposition
