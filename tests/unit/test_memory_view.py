"""One memory view for admission and the ladder, cgroup v2 aware: a scratch directory stands in for /proc/self/cgroup
and /sys/fs/cgroup, written as the kernel writes them for a unit with MemoryMax=."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.agent.model_host import ModelRefusedError, load_model
from edge_agent.config.model import ModelConfig
from edge_agent.config.node import HealthConfig
from edge_agent.health.admission import admit
from edge_agent.health.degrade import Reading
from edge_agent.health.memory import cgroup_memory, own_cgroup
from edge_agent.health.probes import Probes
from edge_agent.health.report import read_health
from edge_agent.model.store.geometry import sizes_at

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20
UNIT = "/system.slice/edge-agent.service"
MEMINFO = "MemTotal: 8000000 kB\nMemFree: 1000000 kB\nMemAvailable: 6000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def machine(root: Path, unit_max: str = "max", slice_max: str = "max", current_mb: float = 1000) -> Probes:
    """A cgroup v2 machine (as systemd sets it up) with this process in edge-agent.service."""
    write(root, "proc/meminfo", MEMINFO)  # 5859 MiB available to the whole system
    write(root, "proc/self/cgroup", f"0::{UNIT}\n")
    write(root, "proc/self/status", "Name:\tedge-agent\nVmRSS:\t  409600 kB\nVmSwap:\t 0 kB\n")
    write(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")  # the root has no memory.max
    write(root, "sys/fs/cgroup/system.slice/memory.max", f"{slice_max}\n")
    write(root, "sys/fs/cgroup/system.slice/memory.current", f"{round((current_mb + 500) * MIB)}\n")
    write(root, f"sys/fs/cgroup{UNIT}/memory.max", f"{unit_max}\n")
    write(root, f"sys/fs/cgroup{UNIT}/memory.current", f"{round(current_mb * MIB)}\n")
    write(root, f"sys/fs/cgroup{UNIT}/memory.stat", f"anon {300 * MIB}\nfile {400 * MIB}\ninactive_file {200 * MIB}\n")
    return Probes(root, vcgencmd=None)


def test_unlimited_cgroups_leave_the_system_view(tmp_path: Path) -> None:
    probes = machine(tmp_path)
    memory = probes.memory()
    assert memory is not None and memory.cgroup is None
    assert memory.available_mb == memory.system_available_mb == pytest.approx(6000000 / 1024)
    assert memory.limited_by == "system"


def test_memory_max_of_the_unit_is_the_real_limit(tmp_path: Path) -> None:
    probes = machine(tmp_path, unit_max=str(3 * 1024 * MIB), current_mb=1000)
    memory = probes.memory()
    assert memory is not None and memory.cgroup is not None
    # 3072 MiB limit, 1000 MiB charged of which 200 MiB is inactive file cache the kernel reclaims first
    assert (memory.cgroup.path, memory.cgroup.limit_mb, memory.cgroup.used_mb) == (UNIT, 3072, 800)
    assert memory.available_mb == 2272 and memory.total_mb == 3072
    assert memory.limited_by == f"cgroup {UNIT}"
    write(tmp_path, f"sys/fs/cgroup{UNIT}/memory.high", f"{2048 * MIB}\n")  # MemoryHigh= below MemoryMax=
    high = probes.cgroup_memory()
    assert high is not None and (high.limit_mb, high.available_mb) == (2048, 1248)
    write(tmp_path, f"sys/fs/cgroup{UNIT}/memory.high", "max\n")
    health, reading = read_health(probes)
    assert health["memory_available_mb"] == 2272 and health["memory_cgroup_limit_mb"] == 3072
    assert reading == Reading(None, frozenset(), 2272, 400)  # the ladder reads the very same numbers


def test_a_tighter_parent_slice_wins_and_a_roomy_cgroup_leaves_the_system(tmp_path: Path) -> None:
    probes = machine(tmp_path / "a", unit_max=str(4096 * MIB), slice_max=str(2048 * MIB), current_mb=1000)
    tight = probes.cgroup_memory()
    assert tight is not None and (tight.path, tight.limit_mb, tight.available_mb) == ("/system.slice", 2048, 548)
    roomy = machine(tmp_path / "b", unit_max=str(64 * 1024 * MIB))
    memory = roomy.memory()
    assert memory is not None and memory.cgroup is not None and memory.limited_by == "system"
    assert memory.available_mb == pytest.approx(6000000 / 1024)


def test_cgroup_files_that_are_absent_or_odd(tmp_path: Path) -> None:
    assert own_cgroup(tmp_path / "absent") is None
    write(tmp_path, "v1", "12:memory:/user.slice\n2:cpu,cpuacct:/user.slice\n")  # cgroup v1 only: not read
    assert own_cgroup(tmp_path / "v1") is None
    write(tmp_path, "hybrid", "1:name=systemd:/x\n0::/user.slice/user-1000.slice/session-2.scope\n")
    assert own_cgroup(tmp_path / "hybrid") == "/user.slice/user-1000.slice/session-2.scope"
    write(tmp_path, "container", "0::/\n")  # a cgroup namespace: its own root carries the container's limit
    write(tmp_path, "fs/memory.max", f"{512 * MIB}\n")
    write(tmp_path, "fs/memory.current", "garbage\n")
    assert cgroup_memory(tmp_path / "container", tmp_path / "fs") is None  # unreadable usage: no claim
    write(tmp_path, "fs/memory.current", f"{100 * MIB}\n")
    found = cgroup_memory(tmp_path / "container", tmp_path / "fs")
    assert found is not None and (found.path, found.available_mb) == ("/", 412)


def test_admission_reads_the_same_view_and_sees_the_unit_limit(tmp_path: Path) -> None:
    model = ModelConfig(path=REPO / "models" / "tiny-gemma4", fallback_path=REPO / "models" / "tiny-gemma4-b")
    health = HealthConfig()
    estimates = admit(model, health, None, sizes_at)
    need = min(estimates.primary.total_mb, estimates.fallback.total_mb if estimates.fallback else 0)
    # the system has GBs free, but the unit's MemoryMax leaves less than either model needs
    probes = machine(tmp_path, unit_max=str(round((800 + need / 2) * MIB)), current_mb=1000)
    with pytest.raises(ModelRefusedError, match=rf"MB available \(memory available now \(cgroup {UNIT}\)\)"):
        load_model(model, health, memory=probes.memory)
    roomy = machine(tmp_path / "roomy", unit_max=str(round((800 + 4 * need) * MIB)), current_mb=1000)
    loaded = load_model(model, health, memory=roomy.memory)
    assert loaded.admission.decision == "load" and loaded.admission.memory_available_mb == pytest.approx(4 * need)
