"""An optional Prometheus endpoint with the node's health figures (bound to localhost unless configured)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from edge_agent.config.node import ThrottleFlag

log = logging.getLogger(__name__)

# health JSON key -> (metric name, help, unit factor)
_HEALTH_GAUGES = {
    "temperature_c": ("edge_agent_temperature_celsius", "Hottest thermal zone.", 1.0),
    "memory_available_mb": ("edge_agent_memory_available_bytes", "Memory available to processes.", 2**20),
    "swap_used_mb": ("edge_agent_swap_used_bytes", "Swap in use.", 2**20),
    "process_rss_mb": ("edge_agent_process_resident_bytes", "Resident memory of the daemon.", 2**20),
    "load_1m": ("edge_agent_load_1m", "One-minute load average.", 1.0),
    "gpu_load_pct": ("edge_agent_gpu_load_percent", "Jetson GPU load.", 1.0),
    "spool_depth": ("edge_agent_spool_depth", "Results waiting in the spool for the broker.", 1.0),
    "spool_dropped": ("edge_agent_spool_dropped", "Results dropped from a full spool since start.", 1.0),
}


class MetricsExporter:
    """Serves /metrics over HTTP from its own registry; `update` sets the gauges from a health report."""

    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self._gauges = {
            key: Gauge(name, help_text, registry=self.registry) for key, (name, help_text, _) in _HEALTH_GAUGES.items()
        }
        registry = self.registry
        self._level = Gauge("edge_agent_degradation_level", "Degradation level (0 = normal).", registry=registry)
        self._throttled = Gauge("edge_agent_throttled", "Pi throttling flag set now.", ["flag"], registry=registry)
        self._camera_up = Gauge("edge_agent_camera_up", "1 while the camera delivers.", ["camera"], registry=registry)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics: Prometheus endpoint on http://%s:%d/metrics", host, port)

    def update(self, report: Mapping[str, Any], degradation_level: int, cameras: Mapping[str, str]) -> None:
        """Set every gauge from the latest health report, degradation level and camera states."""
        for key, gauge in self._gauges.items():
            value = report.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                gauge.set(value * _HEALTH_GAUGES[key][2])
        self._level.set(degradation_level)
        now = report.get("throttled_now")
        if now is not None:  # None: not a Raspberry Pi
            for flag in get_args(ThrottleFlag):
                self._throttled.labels(flag=flag).set(1 if flag in now else 0)
        for camera, state in cameras.items():
            self._camera_up.labels(camera=camera).set(1 if state == "ok" else 0)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        if isinstance(self._thread, threading.Thread):
            self._thread.join(timeout=5)


def open_metrics(host: str, port: int | None) -> MetricsExporter | None:
    """The exporter when a port is configured; a port that cannot be bound is logged and metrics stay off."""
    if port is None:
        return None
    try:
        return MetricsExporter(host, port)
    except OSError as exc:
        log.error("metrics: cannot serve Prometheus on %s:%d (%s); running without it", host, port, exc)
        return None
