"""deploy/install.sh, the README's one-node install, run against a scratch root: twice, then its edge-agent.

The package and its dependencies come from the package index pip is set up for (PyPI here: the first run
takes about a minute); EDGE_AGENT_TEST_PIP_ARGS adds pip arguments, e.g. "--no-index --find-links DIR"
on a machine without one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"
TINY_MODEL = REPO / "models" / "tiny-gemma4"
VENV = Path("opt/edge-agent/venv")
CONFIG = Path("etc/edge-agent/config.yaml")


def snapshot(root: Path) -> dict[str, tuple[str, int, float, str]]:
    """Every path under `root` with its mode, size, mtime and (for files) content hash."""
    seen: dict[str, tuple[str, int, float, str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        seen[str(path.relative_to(root))] = (oct(info.st_mode), info.st_size, info.st_mtime, digest)
    return seen


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    pip_args = os.environ.get("EDGE_AGENT_TEST_PIP_ARGS", "")
    done = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--python", sys.executable, "--pip-args", pip_args, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    pip_args = os.environ.get("EDGE_AGENT_TEST_PIP_ARGS", "").split()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *pip_args, "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("edge_agent_node-*.whl")  # the distribution's own name, not PyPI's "edge-agent"
    return found


def test_install_twice_into_a_scratch_root_then_run_it(wheel: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install(root, str(wheel))
    for path in (VENV / "bin/edge-agent", CONFIG, Path("etc/edge-agent/environment")):
        assert (root / path).is_file(), path
    for installed, source in (
        ("etc/systemd/system/edge-agent.service", "deploy/edge-agent.service"),
        ("etc/udev/rules.d/99-edge-agent.rules", "udev/99-edge-agent.rules"),
    ):
        assert (root / installed).read_bytes() == (REPO / source).read_bytes()
    assert (root / "var/lib/edge-agent/models").is_dir()
    assert oct((root / CONFIG).stat().st_mode & 0o777) == "0o640"
    assert oct((root / "etc/edge-agent/environment").stat().st_mode & 0o777) == "0o600"
    assert "skipped: the user edge-agent" in first.stdout  # a scratch root: no useradd, chown, systemctl, udevadm
    assert "Next steps:" in first.stdout and "systemctl enable --now edge-agent" in first.stdout

    # The user's config is theirs: a second run changes nothing, and keeps an edited config.
    (root / CONFIG).write_text((root / CONFIG).read_text().replace("host: localhost", "host: broker.lan"))
    before = snapshot(root)
    second = install(root, str(wheel))
    assert snapshot(root) == before
    assert "nothing to change" in second.stdout and "up to date" in second.stdout
    assert "kept /etc/edge-agent/config.yaml" in second.stdout

    agent = str(root / VENV / "bin/edge-agent")
    version = subprocess.run([agent, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == "edge-agent 0.1.0", version.stderr
    pip_show = subprocess.run(
        [str(root / VENV / "bin/python"), "-m", "pip", "show", "edge-agent-node"], capture_output=True, text=True
    )
    assert pip_show.returncode == 0 and "Name: edge-agent-node" in pip_show.stdout

    # The template is a valid config; only the model is missing until `models pull` puts one there.
    config = str(root / CONFIG)
    check = subprocess.run([agent, "check-config", "-c", config], capture_output=True, text=True, timeout=60)
    assert check.returncode == 2
    assert [line.split(":")[0].strip() for line in check.stderr.splitlines()[1:]] == ["model.path"], check.stderr
    env = {**os.environ, "EDGE_AGENT_MODEL_DIR": str(TINY_MODEL)}
    check = subprocess.run([agent, "check-config", "-c", config], capture_output=True, text=True, timeout=60, env=env)
    assert check.returncode == 0, check.stderr
    assert "broker broker.lan:1883" in check.stdout

    # doctor --json: one JSON document with and without the config.
    for args in (["-c", config], ["-c", str(root / "etc/edge-agent/none.yaml")]):
        doctor = subprocess.run(
            [agent, "doctor", "--json", "--timeout", "1", *args], capture_output=True, text=True, timeout=120, env=env
        )
        checks = {line["name"]: line for line in json.loads(doctor.stdout)}
        assert doctor.returncode == 1, doctor.stderr  # nothing listens on broker.lan / no config
        assert checks["python"]["verdict"] == "ok" and checks["onnxruntime"]["verdict"] == "ok"
    assert "no config found at" in checks["config"]["detail"]


def test_install_refuses_a_missing_package_and_unknown_options(tmp_path: Path) -> None:
    for args, words in (([str(tmp_path / "none.whl")], "no such file"), (["--bogus"], "unknown option --bogus")):
        done = subprocess.run(
            ["bash", str(INSTALL), "--root", str(tmp_path / "root"), *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0 and words in done.stderr, done.stderr
    assert not (tmp_path / "root" / VENV).exists()
