"""deploy/edge-agent.service: `systemd-analyze verify` passes, exposure <= 3.0, and the required keys are set."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "edge-agent.service"


def _check_unit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_unit", REPO / "deploy" / "check_unit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_unit"] = module
    spec.loader.exec_module(module)
    return module


check_unit = _check_unit()


@pytest.fixture(scope="module")
def tool() -> str:
    """systemd-analyze, or a clean skip when this machine has none."""
    found = check_unit.systemd_analyze()
    if found is None:
        pytest.skip("systemd-analyze is not installed")
    return str(found)


def _settings(path: Path) -> dict[str, list[str]]:
    section, found = "", dict[str, list[str]]()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(f"{section}.{key}", []).append(value)
    return found


def test_unit_verifies_and_is_exposed_at_most_3(tool: str) -> None:
    results = check_unit.check_all(tool)
    assert [r.label for r in results] == ["edge-agent.service", "edge-agent.service + jetson.conf"]
    for figures in results:
        assert figures.verify_ok, figures.verify_output
        assert figures.exposure <= 3.0, (figures.label, figures.exposure)


def test_the_script_prints_the_figures_and_exits_0(tool: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "check_unit.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "edge-agent.service: verify passed; exposure " in done.stdout


def test_a_broken_unit_fails_verify(tool: str, tmp_path: Path) -> None:
    broken = tmp_path / "edge-agent.service"
    broken.write_text(UNIT.read_text().replace("Type=notify", "Type=notfy"))
    figures = check_unit.check(tool, "broken", broken)
    assert not figures.verify_ok and not figures.ok
    loose = tmp_path / "loose" / "edge-agent.service"
    loose.parent.mkdir()
    loose.write_text("[Service]\nExecStart=/opt/none/bin/edge-agent run\n")
    figures = check_unit.check(tool, "loose", loose)
    assert figures.verify_ok and figures.exposure > 3.0 and not figures.ok


def test_unit_has_the_required_keys() -> None:
    unit = _settings(UNIT)
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.ExecStart"] == ["/opt/edge-agent/venv/bin/edge-agent run -c /etc/edge-agent/config.yaml"]
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Service.WatchdogSec"] == ["60"]
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.User"] == ["edge-agent"] and unit["Service.Group"] == ["edge-agent"]
    assert set(unit["Service.SupplementaryGroups"][0].split()) == {"video", "audio"}
    assert unit["Service.ProtectSystem"] == ["strict"]
    assert unit["Service.DevicePolicy"] == ["closed"]
    assert {"char-video4linux rw", "char-alsa rw"} <= set(unit["Service.DeviceAllow"])
    assert unit["Service.StateDirectory"] == ["edge-agent"]
    assert unit["Service.NoNewPrivileges"] == ["yes"]
    assert "Unit.StartLimitIntervalSec" in unit and "Unit.StartLimitBurst" in unit
    assert int(unit["Service.TimeoutStartSec"][0]) >= 300 and unit["Service.TimeoutStopSec"] == ["15"]
    assert unit["Service.MemoryMax"]
    jetson = _settings(REPO / "deploy" / "edge-agent.service.d" / "jetson.conf")
    assert "/dev/nvmap rw" in jetson["Service.DeviceAllow"]


def test_the_environment_file_has_one_name_everywhere() -> None:
    [environment_file] = _settings(UNIT)["Service.EnvironmentFile"]
    assert environment_file == "-/etc/edge-agent/environment"
    install = (REPO / "deploy" / "install.sh").read_text()
    assert 'put "$environment" "$config_dir/environment"' in install and "config_dir=/etc/edge-agent" in install
    defaults = (REPO / "ansible/roles/edge_agent/defaults/main.yml").read_text()
    assert 'edge_agent_environment_file: "{{ edge_agent_config_dir }}/environment"' in defaults
    assert "edge_agent_config_dir: /etc/edge-agent" in defaults
    documents = [REPO / "README.md", *sorted((REPO / "deploy").rglob("*.y*ml")), *sorted((REPO / "ansible").rglob("*"))]
    other_names = [str(p.relative_to(REPO)) for p in documents if p.is_file() and "edge-agent.env" in p.read_text()]
    assert other_names == [], "another name for /etc/edge-agent/environment"


def test_documentation_and_swap_settings_say_what_is_true() -> None:
    unit = _settings(UNIT)
    # Documentation= may only name what a node has: nothing installs a README or a man page there.
    assert "Unit.Documentation" not in unit
    # The node never swaps (a paged-out model stalls the watchdog); the zram advice is for the rest of the system.
    assert unit["Service.MemorySwapMax"] == ["0"]
    text = UNIT.read_text()
    assert "zram" in text and "ProtectHome=yes" in text
