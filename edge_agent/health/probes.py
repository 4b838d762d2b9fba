"""Pure readers of the node's state, with an injectable filesystem root so tests use a fake sysfs/procfs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from edge_agent.health.memory import CgroupMemory, cgroup_memory

# Bits of the Raspberry Pi firmware's get_throttled word (vcgencmd get_throttled).
_THROTTLE_BITS = {
    "under_voltage": 0,
    "frequency_capped": 1,
    "throttled": 2,
    "soft_temperature_limit": 3,
}
_SINCE_BOOT_SHIFT = 16
_PI_THROTTLED_FILE = "sys/devices/platform/soc/soc:firmware/get_throttled"
_JETSON_GPU_LOAD = (
    "sys/devices/platform/gpu.0/load",
    "sys/devices/gpu.0/load",
    "sys/devices/platform/17000000.gpu/load",
)


@dataclass(frozen=True)
class ThermalZone:
    """One /sys/class/thermal/thermal_zoneN."""

    zone: str
    type: str
    celsius: float


@dataclass(frozen=True)
class Throttling:
    """Raspberry Pi throttling flags: what is happening now and what happened since boot."""

    raw: int
    now: frozenset[str]
    since_boot: frozenset[str]

    @classmethod
    def parse(cls, raw: int) -> Throttling:
        """Decode the firmware's bit field."""
        now = frozenset(name for name, bit in _THROTTLE_BITS.items() if raw >> bit & 1)
        since = frozenset(name for name, bit in _THROTTLE_BITS.items() if raw >> (bit + _SINCE_BOOT_SHIFT) & 1)
        return cls(raw, now, since)


@dataclass(frozen=True)
class Memory:
    """System memory from /proc/meminfo, the cgroup v2 limit above this process and its resident size, in MiB.

    `available_mb` is what this process may still use: the lower of MemAvailable and the cgroup's room."""

    total_mb: float
    available_mb: float
    swap_total_mb: float
    swap_used_mb: float
    process_rss_mb: float
    system_available_mb: float | None = None  # MemAvailable alone
    cgroup: CgroupMemory | None = None  # None when no cgroup limits this process

    @property
    def limited_by(self) -> str:
        """'system' or 'cgroup <path>': which of the two leaves less room."""
        system = float("inf") if self.system_available_mb is None else self.system_available_mb
        if self.cgroup is not None and self.cgroup.available_mb <= system:
            return f"cgroup {self.cgroup.path}"
        return "system"


@dataclass(frozen=True)
class Cpu:
    """Load averages and the current frequency of each core."""

    load_1m: float
    load_5m: float
    load_15m: float
    cores: int
    freq_mhz: tuple[float, ...]


@dataclass(frozen=True)
class Disk:
    """Free space where the node keeps something (spool, models)."""

    path: str
    free_mb: float
    total_mb: float


class Probes:
    """Reads the machine under `root` (default `/`); every reader returns None when its source is absent."""

    def __init__(self, root: Path = Path("/"), vcgencmd: str | None = None) -> None:
        self.root = root
        self.vcgencmd = vcgencmd if vcgencmd is not None else (shutil.which("vcgencmd") if root == Path("/") else None)

    def _text(self, relative: str) -> str | None:
        try:
            return (self.root / relative).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def thermal_zones(self) -> list[ThermalZone]:
        """Every thermal zone that reports a temperature."""
        base = self.root / "sys/class/thermal"
        zones = []
        for path in sorted(base.glob("thermal_zone*"), key=lambda p: int(p.name[12:] or 0)):
            temp = self._text(f"sys/class/thermal/{path.name}/temp")
            if temp is None or not temp.lstrip("-").isdigit():
                continue
            kind = self._text(f"sys/class/thermal/{path.name}/type") or "unknown"
            zones.append(ThermalZone(path.name, kind, int(temp) / 1000))
        return zones

    def hottest_celsius(self) -> float | None:
        """The highest temperature any zone reports."""
        zones = self.thermal_zones()
        return max(z.celsius for z in zones) if zones else None

    def throttling(self) -> Throttling | None:
        """Pi throttling flags from the firmware's sysfs file, else from `vcgencmd get_throttled`."""
        text = self._text(_PI_THROTTLED_FILE)
        if text is None and self.vcgencmd:
            try:
                out = subprocess.run(
                    [self.vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=5, check=False
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                return None
            text = out.strip().partition("=")[2]
        if not text:
            return None
        try:
            return Throttling.parse(int(text, 16))
        except ValueError:
            return None

    def process_rss_mb(self) -> float:
        """This process's resident size: VmRSS of proc/self/status, else (no such file under `root`) psutil's."""
        for line in (self._text("proc/self/status") or "").splitlines():
            name, _, value = line.partition(":")
            if name == "VmRSS" and value.split() and value.split()[0].isdigit():
                return int(value.split()[0]) / 1024
        return float(psutil.Process().memory_info().rss / 2**20)

    def cgroup_memory(self) -> CgroupMemory | None:
        """The tightest cgroup v2 limit above this process (`memory.max` of its cgroup or an ancestor)."""
        return cgroup_memory(self.root / "proc/self/cgroup", self.root / "sys/fs/cgroup")

    def memory(self) -> Memory | None:
        """/proc/meminfo and the cgroup's limit (the lower room counts as available), plus our own RSS."""
        text = self._text("proc/meminfo")
        if text is None:
            return None
        fields = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            value = rest.split()
            if value and value[0].isdigit():
                fields[name] = int(value[0]) / 1024  # kB -> MiB
        total, swap_total = fields.get("MemTotal", 0.0), fields.get("SwapTotal", 0.0)
        system = fields.get("MemAvailable", fields.get("MemFree", 0.0))
        cgroup = self.cgroup_memory()
        return Memory(
            total_mb=total if cgroup is None else min(total, cgroup.limit_mb),
            available_mb=system if cgroup is None else min(system, cgroup.available_mb),
            swap_total_mb=swap_total,
            swap_used_mb=swap_total - fields.get("SwapFree", swap_total),
            process_rss_mb=self.process_rss_mb(),
            system_available_mb=system,
            cgroup=cgroup,
        )

    def cpu(self) -> Cpu | None:
        """Load averages from /proc/loadavg and per-core frequencies from cpufreq."""
        load = self._text("proc/loadavg")
        if load is None:
            return None
        one, five, fifteen = (float(x) for x in load.split()[:3])
        freqs = []
        cpus = sorted((self.root / "sys/devices/system/cpu").glob("cpu[0-9]*"), key=lambda p: int(p.name[3:]))
        for cpu in cpus:
            khz = self._text(f"sys/devices/system/cpu/{cpu.name}/cpufreq/scaling_cur_freq")
            if khz and khz.isdigit():
                freqs.append(int(khz) / 1000)
        return Cpu(one, five, fifteen, len(cpus) or (os.cpu_count() or 1), tuple(freqs))

    def jetson_gpu_load(self) -> float | None:
        """Jetson GPU load in percent (the driver reports per mille), when this is a Jetson."""
        for relative in _JETSON_GPU_LOAD:
            text = self._text(relative)
            if text is not None and text.isdigit():
                return int(text) / 10
        return None

    def is_jetson(self) -> bool:
        """True on an NVIDIA Jetson (its CPU and GPU share the system memory)."""
        model = self._text("proc/device-tree/model") or ""
        return "jetson" in model.lower() or (self.root / "etc/nv_tegra_release").is_file()

    def disk(self, path: Path) -> Disk | None:
        """Free space on the filesystem holding `path` (its nearest existing parent)."""
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
        except OSError:
            return None
        return Disk(str(path), usage.free / 2**20, usage.total / 2**20)
