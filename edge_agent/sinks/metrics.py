"""An optional Prometheus endpoint with the node's health figures (bound to localhost unless configured)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, get_args

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from edge_agent.config.node import ThrottleFlag

log = logging.getLogger(__name__)

# health JSON key -> (metric name, help, unit factor)
HEALTH_GAUGES = {
    "temperature_c": ("edge_agent_temperature_celsius", "Hottest thermal zone.", 1.0),
    "memory_available_mb": ("edge_agent_memory_available_bytes", "Memory available to processes.", 2**20),
    "swap_used_mb": ("edge_agent_swap_used_bytes", "Swap in use.", 2**20),
    "process_rss_mb": ("edge_agent_process_resident_bytes", "Resident memory of the daemon.", 2**20),
    "load_1m": ("edge_agent_load_1m", "One-minute load average.", 1.0),
    "gpu_load_pct": ("edge_agent_gpu_load_percent", "Jetson GPU load.", 1.0),
    "spool_depth": ("edge_agent_spool_depth", "Results waiting in the spool for the broker.", 1.0),
    "spool_dropped": ("edge_agent_spool_dropped", "Results dropped from a full spool since start.", 1.0),
}


class HealthCollector(Collector):
    """Builds the gauges from the latest health report at each scrape; an unknown value (None, or a probe this
    machine lacks) has no sample at all rather than a misleading 0."""

    def __init__(self) -> None:
        self.report: Mapping[str, Any] = {}
        self.degradation_level: int | None = None
        self.cameras: Mapping[str, str] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The families that have at least one known value."""
        report = self.report
        for key, (name, help_text, factor) in HEALTH_GAUGES.items():
            value = report.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield GaugeMetricFamily(name, help_text, value=value * factor)
        if self.degradation_level is not None:
            yield GaugeMetricFamily(
                "edge_agent_degradation_level", "Degradation level (0 = normal).", value=self.degradation_level
            )
        now = report.get("throttled_now")
        if now is not None:  # None: not a Raspberry Pi
            throttled = GaugeMetricFamily("edge_agent_throttled", "Pi throttling flag set now.", labels=["flag"])
            for flag in get_args(ThrottleFlag):
                throttled.add_metric([flag], 1 if flag in now else 0)
            yield throttled
        if self.cameras:
            up = GaugeMetricFamily("edge_agent_camera_up", "1 while the camera delivers.", labels=["camera"])
            for camera, state in self.cameras.items():
                up.add_metric([camera], 1 if state == "ok" else 0)
            yield up


class MetricsExporter:
    """Serves /metrics over HTTP from its own registry; `update` hands it the latest health report."""

    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self._health = HealthCollector()
        self.registry.register(self._health)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics: Prometheus endpoint on http://%s:%d/metrics", host, port)

    def update(self, report: Mapping[str, Any], degradation_level: int, cameras: Mapping[str, str]) -> None:
        """Take the latest health report, degradation level and camera states (read at the next scrape)."""
        health = self._health
        health.report, health.degradation_level, health.cameras = dict(report), degradation_level, dict(cameras)

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
