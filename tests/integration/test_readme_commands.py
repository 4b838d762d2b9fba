"""Every command of the README's "Quickstart" and "Running as a service" sections, run on a fresh copy of the
checkout in the order the README gives them.

A command that cannot run here is listed in NOT_HERE with the reason (and, where one exists, the closest
command that can, which then runs in its place); a README command this file does not know fails the test, so
a new or changed line gets run or explained. What each command needs from the machine (a root for
`deploy/install.sh`: a scratch one; the home directory: a temporary one) is given by `_as_run_here`.
The copy shares this project's venv (`.venv` is a link to it): making a venv from the package index is
tested by test_install_script.py and by install.sh below.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("Quickstart", "Running as a service")
TINY_MODEL = REPO / "models" / "tiny-gemma4"

pytestmark = pytest.mark.timeout(1200)


@dataclass(frozen=True)
class NotHere:
    """A README command that cannot run on CI: why, and what runs in its place (or nothing)."""

    pattern: str
    reason: str
    instead: str | None = None


NOT_HERE = (
    NotHere(
        r"\bmodels pull e[24]b\b",
        "downloads Gemma 4 (GBs) from the Hugging Face hub, which CI cannot reach: the same pull runs from the tiny "
        "model's directory under the name the hub pull would give",
        "models pull {tiny} --name gemma-4-E2B-it-ONNX",
    ),
    NotHere(r"^make test\b", "runs the whole test suite, this test included; it is CI's own main step"),
    NotHere(r"^sudoedit\b", "opens an editor; the edit a user makes (the model's path) is made by the test"),
    NotHere(
        r"\bsystemctl\b",
        "needs systemd as PID 1, which CI lacks; the unit is verified by test_systemd_unit.py and the daemon's "
        "notify/watchdog protocol by test_daemon_systemd.py",
    ),
)


def readme_commands(readme: str) -> list[tuple[str, str]]:
    """(section, command) for every line of every ```sh block of SECTIONS, continuation lines joined."""
    found: list[tuple[str, str]] = []
    section, fenced, pending = "", False, ""
    for raw in readme.splitlines():
        line = raw.strip()
        if raw.startswith("## "):
            section = raw[3:].strip()
        elif line.startswith("```"):
            fenced = line == "```sh" and section in SECTIONS
        elif fenced and line and not line.startswith("#"):
            pending += line.removesuffix("\\").strip() + " "
            if not line.endswith("\\"):
                found.append((section, pending.strip()))
                pending = ""
    return found


def test_the_sections_have_commands() -> None:
    commands = readme_commands((REPO / "README.md").read_text())
    assert {section for section, _ in commands} == set(SECTIONS)
    assert any(command.startswith("make demo") for _, command in commands)
    assert any("deploy/install.sh" in command for _, command in commands)


def test_a_command_nobody_knows_fails_the_test() -> None:
    readme = "## Quickstart\n\n```sh\nmake demo\nfrobnicate --all   # new\n```\n"
    commands = [command for _, command in readme_commands(readme)]
    assert commands == ["make demo", "frobnicate --all   # new"]
    with pytest.raises(AssertionError, match="frobnicate"):
        _as_run_here(commands[1], Path("/nonexistent"), Path("/nonexistent"))


def _fresh_copy(target: Path) -> Path:
    """The files a clone has (tracked, and new ones not ignored), as they are in this working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(Path(sys.prefix))
    return target


def _as_run_here(command: str, clone: Path, root: Path) -> tuple[str, str | None]:
    """The shell line that runs `command` here, and why it differs from the README's (None: it is the same)."""
    why = None
    for rule in NOT_HERE:
        if re.search(rule.pattern, command):
            if rule.instead is None:
                return "", rule.reason
            command, why = re.sub(r"models pull e[24]b", rule.instead.format(tiny=TINY_MODEL), command), rule.reason
    known = (
        r"^make demo\b",
        r"^(sudo )?deploy/install\.sh\b",
        r"^(sudo (-u edge-agent -H )?)?(\.venv|/opt/edge-agent/venv)/bin/edge-agent ",
    )
    assert any(re.search(pattern, command) for pattern in known), (
        f"README command {command!r} is neither run by this test nor listed in NOT_HERE with the reason"
    )
    if command.startswith("make demo"):
        # .venv is this project's venv: never rebuild it from here
        return command.replace("make demo", "make -o .venv/.runtime demo DEMO_SECONDS=8", 1), why
    command = re.sub(r"^sudo (-u edge-agent -H )?", "", command)
    for system_path in ("/opt/edge-agent", "/etc/edge-agent", "/var/lib/edge-agent"):
        command = re.sub(rf"(?<![\w/]){re.escape(system_path)}", f"{root}{system_path}", command)
    if command.startswith("deploy/install.sh"):
        pip = shlex.quote(os.environ.get("EDGE_AGENT_TEST_PIP_ARGS", ""))
        extra = f" --root {root} --python {sys.executable} --no-apt --pip-args {pip}"
        command = command.replace("deploy/install.sh", "bash deploy/install.sh" + extra, 1)
        why = "a scratch root (--root): no user, systemd or udev changes; OS packages are the rig's (--no-apt)"
    return command, why


def _run_daemon(line: str, cwd: Path, env: dict[str, str]) -> str:
    """Start `edge-agent run`, wait until its model is loaded, stop it with SIGTERM; its log."""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    lines, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        lines.append(proc.stderr.readline())
        if "model loaded" in lines[-1]:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=30)[1]
    log = "".join(lines) + rest
    assert "model loaded" in log and proc.returncode == 0, log[-3000:]
    return log


def test_every_quickstart_and_service_command_runs_on_a_fresh_copy(tmp_path: Path) -> None:
    clone = _fresh_copy(tmp_path / "clone")
    root, home = tmp_path / "root", tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("EDGE_AGENT_CONFIG", None)
    report = []
    for section, command in readme_commands((clone / "README.md").read_text()):
        line, why = _as_run_here(command, clone, root)
        report.append(f"[{section}] {command}\n    -> {line or 'not run'}{f'  ({why})' if why else ''}")
        if not line:
            continue
        if " run -c " in line:
            _run_daemon(line, clone, env)
            continue
        done = subprocess.run(["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        allowed = {0, 1} if " doctor " in line else {0}  # doctor fails checks here (no broker, no camera)
        assert done.returncode in allowed, f"{command}\nran as: {line}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        if "install.sh" in line:
            # what `sudoedit /etc/edge-agent/config.yaml` does: the model's path, here under the scratch root
            config = root / "etc/edge-agent/config.yaml"
            config.write_text(config.read_text().replace("/var/lib/edge-agent/", f"{root}/var/lib/edge-agent/"))
    print("\n".join(report))
    assert (clone / "config.yaml").is_file()  # written by the quickstart's `edge-agent init`
    assert (root / "opt/edge-agent/venv/bin/edge-agent").is_file()


def test_every_mosquitto_rr_line_of_the_readme_gives_up_in_time() -> None:
    # mosquitto_rr without -W waits forever for a reply that never comes (node down, request refused)
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if "mosquitto_rr " in line]
    commands = [line[line.index("mosquitto_rr ") :] for line in lines]
    assert commands, "the README shows how to ask with mosquitto_rr"
    without = [command for command in commands if not re.search(r"\s-W\s+\d+", command)]
    assert without == [], "add -W <seconds> to these README lines"
