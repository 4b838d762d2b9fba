"""Health probes read a fake sysfs/procfs tree exactly as they would read a Pi or a Jetson."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.health.probes import Probes, Throttling

MEMINFO = """MemTotal:        8000000 kB
MemFree:          500000 kB
MemAvailable:    2048000 kB
SwapTotal:       1048576 kB
SwapFree:         524288 kB
"""


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def pi(tmp_path: Path) -> Path:
    write(tmp_path, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "61250\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/type", "rp1_adc\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "43000\n")
    write(tmp_path, "sys/class/thermal/thermal_zone2/type", "broken\n")  # no temp file: skipped
    write(tmp_path, "sys/devices/platform/soc/soc:firmware/get_throttled", "50005\n")
    write(tmp_path, "proc/meminfo", MEMINFO)
    write(tmp_path, "proc/loadavg", "1.50 0.75 0.25 2/300 12345\n")
    for cpu, khz in enumerate((2400000, 1500000)):
        write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", f"{khz}\n")
    write(tmp_path, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    return tmp_path


def test_thermal_zones_and_the_hottest(pi: Path) -> None:
    probes = Probes(pi)
    assert [(z.zone, z.type, z.celsius) for z in probes.thermal_zones()] == [
        ("thermal_zone0", "cpu-thermal", 61.25),
        ("thermal_zone1", "rp1_adc", 43.0),
    ]
    assert probes.hottest_celsius() == 61.25


def test_pi_throttling_bits_now_and_since_boot(pi: Path) -> None:
    throttling = Probes(pi).throttling()
    assert throttling == Throttling(
        0x50005, frozenset({"under_voltage", "throttled"}), frozenset({"under_voltage", "throttled"})
    )
    assert Throttling.parse(0x80008).now == {"soft_temperature_limit"}
    assert Throttling.parse(0x20000).since_boot == {"frequency_capped"} and not Throttling.parse(0x20000).now


def test_throttling_through_vcgencmd(tmp_path: Path) -> None:
    fake = tmp_path / "vcgencmd"
    fake.write_text("#!/bin/sh\necho throttled=0x2\n")
    fake.chmod(0o755)
    assert Probes(tmp_path, vcgencmd=str(fake)).throttling() == Throttling(
        2, frozenset({"frequency_capped"}), frozenset()
    )


def test_memory_and_cpu(pi: Path) -> None:
    probes = Probes(pi)
    memory = probes.memory()
    assert memory is not None
    assert (memory.total_mb, memory.available_mb, memory.swap_total_mb, memory.swap_used_mb) == (
        7812.5,
        2000.0,
        1024.0,
        512.0,
    )
    assert memory.process_rss_mb > 10  # this test process, read for real
    cpu = probes.cpu()
    assert cpu is not None and (cpu.load_1m, cpu.cores, cpu.freq_mhz) == (1.5, 2, (2400.0, 1500.0))


def test_a_jetson_reports_gpu_load(tmp_path: Path) -> None:
    write(tmp_path, "sys/devices/gpu.0/load", "537\n")
    write(tmp_path, "etc/nv_tegra_release", "# R36 (release), REVISION: 4.0\n")
    probes = Probes(tmp_path)
    assert probes.jetson_gpu_load() == 53.7 and probes.is_jetson()


def test_absent_sources_read_as_none(tmp_path: Path, pi: Path) -> None:
    empty = Probes(tmp_path / "nothing")
    assert empty.thermal_zones() == [] and empty.hottest_celsius() is None
    assert empty.throttling() is None and empty.memory() is None and empty.cpu() is None
    assert empty.jetson_gpu_load() is None and not empty.is_jetson() and not Probes(pi).is_jetson()


def test_disk_free_of_a_path_that_does_not_exist_yet(tmp_path: Path) -> None:
    disk = Probes().disk(tmp_path / "spool" / "not-yet")
    assert disk is not None and 0 < disk.free_mb <= disk.total_mb
