"""The memory this process may still use: the lower of the system's MemAvailable and what its cgroup v2 limits leave.

A service with `MemoryMax=` / `MemoryHigh=` (or a container) lives in a cgroup whose `memory.max` / `memory.high`
are its real ceiling, whatever /proc/meminfo says. Admission and the degradation ladder both read this one view,
through `Probes.memory()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MIB = 2**20


@dataclass(frozen=True)
class CgroupMemory:
    """The tightest cgroup v2 memory limit above this process, in MiB."""

    path: str  # the cgroup whose limit leaves the least room, e.g. /system.slice/edge-agent.service
    limit_mb: float  # its memory.max, or memory.high when lower
    used_mb: float  # its memory.current less inactive file cache (the kernel reclaims that before it kills)

    @property
    def available_mb(self) -> float:
        """Room left under the limit (never below 0)."""
        return max(0.0, self.limit_mb - self.used_mb)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def own_cgroup(proc_self_cgroup: Path) -> str | None:
    """The cgroup v2 path of this process from /proc/self/cgroup (its `0::<path>` line), or None without one."""
    text = _read(proc_self_cgroup)
    for line in (text or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "" and path.startswith("/"):
            return path
    return None


def _inactive_file(stat: str | None) -> int:
    for line in (stat or "").splitlines():
        name, _, value = line.partition(" ")
        if name == "inactive_file" and value.strip().isdigit():
            return int(value)
    return 0


def _limited(directory: Path, path: str) -> CgroupMemory | None:
    """The limit set on one cgroup directory (the lower of memory.max and memory.high, where the kernel starts to
    throttle and reclaim), or None when it has none ("max") or cannot be read."""
    limits = [_read(directory / "memory.max"), _read(directory / "memory.high")]
    numbers = [int(text) for text in limits if text is not None and text.isdigit()]
    current = _read(directory / "memory.current")
    if not numbers or current is None or not current.isdigit():
        return None
    used = max(0, int(current) - _inactive_file(_read(directory / "memory.stat")))
    return CgroupMemory(path, min(numbers) / MIB, used / MIB)


def cgroup_memory(proc_self_cgroup: Path, cgroup_root: Path) -> CgroupMemory | None:
    """The limit that leaves the least room among this process's cgroup and its ancestors; None when unlimited
    (every `memory.max` says "max") or when there is no cgroup v2 hierarchy to read."""
    own = own_cgroup(proc_self_cgroup)
    if own is None:
        return None
    cgroup = PurePosixPath(own)
    tightest: CgroupMemory | None = None
    for path in (cgroup, *cgroup.parents):
        relative = path.relative_to("/")
        found = _limited(cgroup_root / relative, str(path))
        if found is not None and (tightest is None or found.available_mb < tightest.available_mb):
            tightest = found
    return tightest
