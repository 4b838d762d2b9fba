"""The `health` JSON published on MQTT, built from the probes."""

from __future__ import annotations

from typing import Any

from edge_agent.health.degrade import Reading
from edge_agent.health.probes import Probes


def read_health(probes: Probes) -> tuple[dict[str, Any], Reading]:
    """The `health` JSON (None where unknown) and the degradation ladder's reading, from one read of each probe."""
    memory, cpu, throttling = probes.memory(), probes.cpu(), probes.throttling()
    hottest = probes.hottest_celsius()
    return {
        "temperature_c": hottest,
        "throttled_now": sorted(throttling.now) if throttling else None,
        "throttled_since_boot": sorted(throttling.since_boot) if throttling else None,
        "memory_available_mb": round(memory.available_mb, 1) if memory else None,
        "memory_cgroup_limit_mb": round(memory.cgroup.limit_mb, 1) if memory and memory.cgroup else None,
        "swap_used_mb": round(memory.swap_used_mb, 1) if memory else None,
        "process_rss_mb": round(memory.process_rss_mb, 1) if memory else None,
        "load_1m": cpu.load_1m if cpu else None,
        "gpu_load_pct": probes.jetson_gpu_load(),
    }, Reading.of(hottest, throttling, memory)
