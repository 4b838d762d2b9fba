"""The `health` JSON published on MQTT, built from the probes."""

from __future__ import annotations

from typing import Any

from edge_agent.health.probes import Probes


def health_report(probes: Probes) -> dict[str, Any]:
    """Temperature, throttling, memory and load, as one flat-ish JSON object (None where unknown)."""
    memory, cpu, throttling = probes.memory(), probes.cpu(), probes.throttling()
    return {
        "temperature_c": probes.hottest_celsius(),
        "throttled_now": sorted(throttling.now) if throttling else None,
        "throttled_since_boot": sorted(throttling.since_boot) if throttling else None,
        "memory_available_mb": round(memory.available_mb, 1) if memory else None,
        "swap_used_mb": round(memory.swap_used_mb, 1) if memory else None,
        "process_rss_mb": round(memory.process_rss_mb, 1) if memory else None,
        "load_1m": cpu.load_1m if cpu else None,
        "gpu_load_pct": probes.jetson_gpu_load(),
    }
