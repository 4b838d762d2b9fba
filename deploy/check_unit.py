#!/usr/bin/env python3
"""Checks deploy/edge-agent.service with systemd-analyze: `verify` passes and the security exposure is <= 3.0."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
UNIT = DEPLOY / "edge-agent.service"
DROPINS = DEPLOY / "edge-agent.service.d"
MAX_EXPOSURE = 3.0
_EXPOSURE = re.compile(r"Overall exposure level for \S+: ([0-9.]+) (\w+)")
_EXEC = re.compile(r"^(Exec\w+=)([-@:+!]*)(/\S+)(.*)$")


@dataclass(frozen=True)
class Figures:
    """What one check found: the verify outcome and the security exposure of a unit (plus drop-ins)."""

    label: str
    verify_ok: bool
    verify_output: str
    exposure: float
    rating: str

    @property
    def ok(self) -> bool:
        """True when verify passed and the exposure is within the limit."""
        return self.verify_ok and self.exposure <= MAX_EXPOSURE


def systemd_analyze() -> str | None:
    """Path of systemd-analyze, or None when it is not installed."""
    return shutil.which("systemd-analyze")


def stage(unit: Path, dropins: list[Path], into: Path) -> Path:
    """Copy the unit (and drop-ins) into `into`, pointing Exec*= binaries that do not exist at fake executables.

    `systemd-analyze verify` refuses a unit whose ExecStart binary is missing (the venv lives on the target,
    not here), so each missing binary gets an empty executable under `into/fake-root/<its path>`.
    """
    lines = []
    for original in unit.read_text().splitlines():
        line, match = original, _EXEC.match(original)
        if match and not Path(match.group(3)).exists():
            fake = into / "fake-root" / match.group(3).lstrip("/")
            fake.parent.mkdir(parents=True, exist_ok=True)
            fake.write_text("#!/bin/sh\nexit 0\n")
            fake.chmod(0o755)
            line = f"{match.group(1)}{match.group(2)}{fake}{match.group(4)}"
        lines.append(line)
    staged = into / unit.name
    staged.write_text("\n".join(lines) + "\n")
    if dropins:
        directory = into / f"{unit.name}.d"
        directory.mkdir()
        for dropin in dropins:
            shutil.copy(dropin, directory / dropin.name)
    return staged


def verify(tool: str, staged: Path) -> tuple[bool, str]:
    """`systemd-analyze verify`: ok when it exits 0 and prints nothing about our files (warnings count as failures)."""
    done = subprocess.run(
        [tool, "--no-pager", "verify", str(staged)], capture_output=True, text=True, timeout=60, check=False
    )
    ours = [line for line in (done.stdout + done.stderr).splitlines() if str(staged.parent) in line]
    return done.returncode == 0 and not ours, (done.stdout + done.stderr).strip()


def exposure(tool: str, staged: Path) -> tuple[float, str]:
    """Overall exposure level and its rating word from `systemd-analyze security --offline=true`."""
    done = subprocess.run(
        [tool, "--no-pager", "security", "--offline=true", str(staged)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = _EXPOSURE.search(done.stdout + done.stderr)
    if match is None:
        raise RuntimeError(f"no overall exposure in systemd-analyze security output:\n{done.stdout}{done.stderr}")
    return float(match.group(1)), match.group(2)


def check(tool: str, label: str, unit: Path = UNIT, dropins: list[Path] | None = None) -> Figures:
    """Stage the unit (with drop-ins) in a temporary directory and take both figures."""
    with tempfile.TemporaryDirectory(prefix="edge-agent-unit-") as tmp:
        staged = stage(unit, dropins or [], Path(tmp))
        verify_ok, output = verify(tool, staged)
        level, rating = exposure(tool, staged)
    return Figures(label, verify_ok, output, level, rating)


def check_all(tool: str) -> list[Figures]:
    """The shipped unit alone, and with each drop-in of deploy/edge-agent.service.d/."""
    results = [check(tool, UNIT.name)]
    for dropin in sorted(DROPINS.glob("*.conf")):
        results.append(check(tool, f"{UNIT.name} + {dropin.name}", UNIT, [dropin]))
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the figures; exit 1 when verify fails or an exposure is above 3.0, 2 without systemd-analyze."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    tool = systemd_analyze()
    if tool is None:
        print("check_unit: systemd-analyze is not installed (apt-get install systemd)", file=sys.stderr)
        return 2
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    print(f"{version}")
    results = check_all(tool)
    for figures in results:
        verdict = "passed" if figures.verify_ok else "FAILED"
        print(f"{figures.label}: verify {verdict}; exposure {figures.exposure:.1f} {figures.rating}")
        if not figures.verify_ok:
            print("  " + figures.verify_output.replace("\n", "\n  "))
        if figures.exposure > MAX_EXPOSURE:
            print(f"  exposure {figures.exposure:.1f} is above {MAX_EXPOSURE:.1f}")
    return 0 if all(f.ok for f in results) else 1


if __name__ == "__main__":
    sys.exit(main())
