"""Checks of the machine itself: Python, onnxruntime, the model and its memory, heat, disk and clock."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from edge_agent.config import HealthConfig, ModelConfig
from edge_agent.doctor.check import Check, fail, ok, warn
from edge_agent.health.admission import estimate_memory, repack_bytes
from edge_agent.health.probes import Probes
from edge_agent.model.store.files import ModelFiles, ModelFilesError, locate_model, verify_manifest
from edge_agent.model.store.geometry import model_sizes

MIN_PYTHON = (3, 10)
MIN_ONNXRUNTIME = (1, 23)
DISK_FAIL_MB = 100.0
DISK_WARN_MB = 1024.0
MIN_YEAR = 2025
# Throttling flags that mean the board is failing right now; the others (capped, soft limit) are warnings.
THROTTLE_FAIL_NOW = frozenset({"under_voltage", "throttled"})


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_python(version: tuple[int, int, int] | None = None) -> Check:
    """Python is new enough."""
    found = version or (sys.version_info.major, sys.version_info.minor, sys.version_info.micro)
    text = ".".join(map(str, found))
    if found[:2] < MIN_PYTHON:
        return fail("python", f"{text}: edge-agent needs {'.'.join(map(str, MIN_PYTHON))} or newer")
    return ok("python", f"{text} ({sys.executable})")


def check_onnxruntime(model: ModelConfig | None) -> Check:
    """onnxruntime imports, is new enough and has the configured execution providers (any, without a config)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return fail("onnxruntime", f"cannot import onnxruntime: {exc}")
    from edge_agent.model.runtime.engine import EngineError, choose_providers

    version = str(ort.__version__)
    available = list(ort.get_available_providers())
    try:
        chosen = choose_providers(model.providers if model is not None else [], available)
    except EngineError as exc:
        return fail("onnxruntime", f"{version}: {exc}")
    using = "using" if model is not None else "would use"
    detail = f"{version}; providers: {', '.join(available)}; {using} {', '.join(chosen)}"
    if _version_tuple(version) < MIN_ONNXRUNTIME:
        return warn("onnxruntime", f"{detail}; older than {'.'.join(map(str, MIN_ONNXRUNTIME))}, which is tested")
    return ok("onnxruntime", detail)


def _mb(value: float) -> str:
    return f"{value:.1f} MB" if value < 10 else f"{value:.0f} MB"


def model_size_mb(files: ModelFiles) -> float:
    """Size of every graph file and sidecar the variant loads, in MiB."""
    return sum(path.stat().st_size for graph in files.graphs() for path in graph.paths) / 2**20


def check_model(model: ModelConfig) -> tuple[Check, ModelFiles | None]:
    """The configured variant's files exist and match manifest.json."""
    try:
        files = locate_model(model.path, model.variant, verify=False)
        checked = verify_manifest(files)
    except (ModelFilesError, OSError) as exc:
        return fail("model", str(exc)), None
    inputs = ", ".join(kind for kind, present in files.modalities.items() if present)
    detail = f"{files.root} ({files.variant}): {len(files.graphs())} graphs, {_mb(model_size_mb(files))}; {inputs}"
    if not checked:
        return warn("model", f"{detail}; no manifest.json, checksums not checked"), files
    return ok("model", f"{detail}; sizes and sha256 match manifest.json"), files


def check_memory(files: ModelFiles | None, probes: Probes, model: ModelConfig, health: HealthConfig) -> Check:
    """The model fits in memory (the daemon's admission estimate: files, KV cache, margin), leaving `memory_low_mb`."""
    memory = probes.memory()
    if memory is None:
        return warn("memory", "cannot read /proc/meminfo")
    have = f"{_mb(memory.available_mb)} available of {_mb(memory.total_mb)}"
    if files is None:
        return warn("memory", f"{have}; the model was not found, so its needs are unknown")
    sizes = model_sizes(files)
    repack = repack_bytes(sizes, model.int8_activations, model.accuracy_level)
    estimate = estimate_memory(
        sizes, model.max_context, health.admission_margin_pct, health.admission_margin_mb, repack=repack
    )
    need = estimate.total_mb
    detail = f"the {files.variant} model {estimate.describe()}; {have}"
    if need > memory.total_mb:
        return fail("memory", f"{detail}: it cannot fit; use a smaller variant or model")
    if need > memory.available_mb:
        return fail("memory", f"{detail}: it does not fit now; stop other programs")
    if memory.available_mb - need < health.memory_low_mb:
        return warn("memory", f"{detail}: less than health.memory_low_mb ({health.memory_low_mb} MB) would be left")
    return ok("memory", detail)


def check_machine_memory(probes: Probes, health: HealthConfig) -> Check:
    """Memory of a node without a config: what is there (a model's needs are checked once one is configured)."""
    memory = probes.memory()
    if memory is None:
        return warn("memory", "cannot read /proc/meminfo")
    detail = f"{_mb(memory.available_mb)} available of {_mb(memory.total_mb)}"
    if memory.available_mb < health.memory_low_mb:
        return warn("memory", f"{detail}: less than health.memory_low_mb ({health.memory_low_mb} MB)")
    return ok("memory", f"{detail}; the model's needs are checked once a config names it")


def check_temperature(probes: Probes, health: HealthConfig) -> Check:
    """The hottest thermal zone against the configured high and critical temperatures."""
    zones = probes.thermal_zones()
    if not zones:
        return warn("temperature", "no thermal zone readable under /sys/class/thermal")
    hottest = max(zones, key=lambda zone: zone.celsius)
    detail = (
        f"{hottest.celsius:.1f} °C ({hottest.type}); "
        f"high {health.temperature_high_c:g} °C, critical {health.temperature_critical_c:g} °C"
    )
    if hottest.celsius >= health.temperature_critical_c:
        return fail("temperature", f"{detail}: too hot; improve the cooling")
    if hottest.celsius >= health.temperature_high_c:
        return warn("temperature", f"{detail}: the node will degrade")
    return ok("temperature", detail)


def check_throttling(probes: Probes) -> Check:
    """Raspberry Pi firmware flags: under-voltage or throttling now fails, anything since boot warns."""
    flags = probes.throttling()
    if flags is None:
        return ok("throttling", "no Raspberry Pi firmware flags (not a Pi, or vcgencmd missing)")
    since = f"; since boot: {', '.join(sorted(flags.since_boot))}" if flags.since_boot else ""
    hint = "; check the power supply (27 W USB-C for a Pi 5)" if "under_voltage" in flags.now | flags.since_boot else ""
    if flags.now & THROTTLE_FAIL_NOW:
        return fail("throttling", f"now: {', '.join(sorted(flags.now))}{since}{hint} ({flags.raw:#x})")
    if flags.now:
        return warn("throttling", f"now: {', '.join(sorted(flags.now))}{since}{hint} ({flags.raw:#x})")
    if flags.since_boot:
        return warn("throttling", f"none now{since}{hint} ({flags.raw:#x})")
    return ok("throttling", f"none ({flags.raw:#x})")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(name: str, path: Path, probes: Probes, writable: bool = False) -> Check:
    """Free space on the filesystem holding `path` (and, with `writable`, that it can be written)."""
    disk = probes.disk(path)
    if disk is None:
        return fail(name, f"{path}: cannot read the free space")
    detail = f"{path}: {_mb(disk.free_mb)} free of {_mb(disk.total_mb)}"
    existing = _nearest_existing(path)
    if writable and not os.access(existing, os.W_OK):
        return fail(name, f"{detail}; {existing} is not writable by this user")
    if disk.free_mb < DISK_FAIL_MB:
        return fail(name, f"{detail}: nearly full")
    if disk.free_mb < DISK_WARN_MB:
        return warn(name, f"{detail}: getting full")
    return ok(name, detail)


def ntp_synchronized() -> tuple[bool | None, str]:
    """`timedatectl show -p NTPSynchronized --value`: True/False, or None with the reason it is unknown."""
    tool = shutil.which("timedatectl")
    if tool is None:
        return None, "timedatectl is not installed"
    try:
        done = subprocess.run(
            [tool, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"timedatectl: {exc}"
    value = done.stdout.strip()
    if done.returncode != 0 or value not in ("yes", "no"):
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[0]
        return None, f"timedatectl: {reason}"
    return value == "yes", "timedatectl"


def check_clock(now: float | None = None, ntp: Callable[[], tuple[bool | None, str]] = ntp_synchronized) -> Check:
    """The clock is set (year >= 2025) and NTP keeps it synchronised."""
    when = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    shown = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    if when.year < MIN_YEAR:
        return fail("clock", f"{shown}: the clock is not set (no RTC, no NTP?); TLS and timestamps will be wrong")
    synced, source = ntp()
    if synced is None:
        return warn("clock", f"{shown}; NTP status unknown ({source})")
    if not synced:
        return warn("clock", f"{shown}; not synchronised by NTP")
    return ok("clock", f"{shown}; synchronised by NTP")
