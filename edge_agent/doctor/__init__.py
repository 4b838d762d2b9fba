"""`edge-agent doctor`'s checks: each returns a Check(name, verdict, detail); `run_checks` runs them all."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from edge_agent.config import CameraConfig, Config, HealthConfig
from edge_agent.doctor.check import Check, Verdict, fail, ok, warn
from edge_agent.health.probes import Probes

__all__ = ["Check", "Verdict", "fail", "ok", "run_checks", "run_machine_checks", "warn"]

# Where a node installed by deploy/install.sh or the Ansible role keeps its state and models.
STATE_DIR = Path("/var/lib/edge-agent")


def _guarded(name: str, check: Callable[[], list[Check]]) -> Callable[[], list[Check]]:
    """A check that reports its own crash as a failed line instead of ending the report."""

    def run() -> list[Check]:
        try:
            return check()
        except Exception as exc:
            return [fail(name, f"the check itself failed: {type(exc).__name__}: {exc}")]

    return run


def run_checks(
    config: Config, probes: Probes | None = None, camera_timeout_s: float = 10.0, broker_timeout_s: float = 5.0
) -> list[Check]:
    """Every check, run side by side (cameras and the broker wait on I/O), in a fixed order."""
    from edge_agent.doctor.broker import check_broker
    from edge_agent.doctor.inputs import check_camera, check_microphone
    from edge_agent.doctor.node import (
        check_clock,
        check_disk,
        check_memory,
        check_model,
        check_onnxruntime,
        check_python,
        check_temperature,
        check_throttling,
    )
    from edge_agent.doctor.spool import check_spool
    from edge_agent.doctor.tasks import check_tasks
    from edge_agent.sinks.mqtt import default_spool_path

    probes = probes or Probes()
    spool = config.mqtt.spool_path or default_spool_path()

    def model_and_memory() -> list[Check]:
        model, files = check_model(config.model)
        return [model, check_memory(files, probes, config.model, config.health)]

    def camera_check(camera: CameraConfig) -> Callable[[], list[Check]]:
        return lambda: [check_camera(camera, camera_timeout_s)]

    plan: list[tuple[str, Callable[[], list[Check]]]] = [
        ("python", lambda: [check_python()]),
        ("onnxruntime", lambda: [check_onnxruntime(config.model)]),
        ("model", model_and_memory),
        ("tasks", lambda: [check_tasks(config)]),
        ("temperature", lambda: [check_temperature(probes, config.health), check_throttling(probes)]),
        *[(f"camera {camera.name}", camera_check(camera)) for camera in config.cameras],
        *([] if config.cameras else [("cameras", lambda: [ok("cameras", "none configured")])]),
        ("microphone", lambda: [check_microphone(config.microphone)]),
        ("broker", lambda: [check_broker(config.mqtt, config.device.id, broker_timeout_s)]),
        ("spool", lambda: [check_spool(spool)]),
        ("disk", lambda: [check_disk("disk spool", spool, probes, writable=True)]),
        ("disk", lambda: [check_disk("disk model", config.model.path, probes)]),
        ("clock", lambda: [check_clock()]),
    ]
    return _run_plan(plan)


def _run_plan(plan: list[tuple[str, Callable[[], list[Check]]]]) -> list[Check]:
    with ThreadPoolExecutor(max_workers=len(plan), thread_name_prefix="doctor") as pool:
        futures: list[Future[list[Check]]] = [pool.submit(_guarded(name, check)) for name, check in plan]
        return [line for future in futures for line in future.result()]


def run_machine_checks(probes: Probes | None = None, state_dir: Path = STATE_DIR) -> list[Check]:
    """The checks that need no config (a node not configured yet): Python, onnxruntime and its providers,
    memory, heat, the cameras and audio inputs present, disk space where models go, and the clock."""
    from edge_agent.doctor.inputs import check_audio_inputs, check_video_devices
    from edge_agent.doctor.node import (
        check_clock,
        check_disk,
        check_machine_memory,
        check_onnxruntime,
        check_python,
        check_temperature,
        check_throttling,
    )

    probes = probes or Probes()
    health = HealthConfig()  # the default thresholds
    disk_path = state_dir if state_dir.exists() else Path("/")
    plan: list[tuple[str, Callable[[], list[Check]]]] = [
        ("python", lambda: [check_python()]),
        ("onnxruntime", lambda: [check_onnxruntime(None)]),
        ("memory", lambda: [check_machine_memory(probes, health)]),
        ("temperature", lambda: [check_temperature(probes, health), check_throttling(probes)]),
        ("cameras", check_video_devices),
        ("audio inputs", check_audio_inputs),
        ("disk", lambda: [check_disk("disk", disk_path, probes)]),
        ("clock", lambda: [check_clock()]),
    ]
    return _run_plan(plan)
