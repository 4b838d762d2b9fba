"""`make demo` (deploy/demo/run_demo.py) as a new user meets it: what it shows, the files it writes, the next step,
and DEMO_KEEP_BROKER=1 leaving a broker and a node that the printed `mosquitto_rr` line gets an answer from."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "deploy" / "demo" / "run_demo.py"

pytestmark = pytest.mark.timeout(300)


def _stop(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def test_the_demo_explains_itself_writes_snapshots_and_can_keep_its_broker(tmp_path: Path) -> None:
    if shutil.which("mosquitto_rr") is None:
        pytest.fail("mosquitto_rr is missing: apt-get install -y mosquitto-clients")
    out = tmp_path / "demo"
    env = {**os.environ, "DEMO_KEEP_BROKER": "1"}
    run = subprocess.run(
        [sys.executable, str(DEMO), "--seconds", "20", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    stop = re.search(r"stop both: kill (\d+) (\d+)", run.stdout)
    pids = [int(pid) for pid in stop.groups()] if stop else []
    try:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        text = run.stdout
        assert "RANDOM-WEIGHT model" in text and "meaningless" in text and "valid" in text
        saved = [Path(p) for p in re.findall(r"saved as (\S+\.jpg)", text)]
        assert saved, text[-3000:]
        for path in saved:
            assert path.parent == out / "snapshots" and path.read_bytes()[:3] == b"\xff\xd8\xff"
        assert f"snapshots written: {len(saved)}, in {out / 'snapshots'}/" in text
        assert "edge-agent models pull e2b" in text and "edge-agent init" in text and "edge-agent run -c" in text
        assert stop is not None, text[-2000:]
        ask = re.search(r"^\s+(mosquitto_rr .*)$", text, re.MULTILINE)
        assert ask is not None and " -W " in ask.group(1)
        reply = subprocess.run(shlex.split(ask.group(1)), capture_output=True, text=True, timeout=60)
        assert reply.returncode == 0, reply.stdout + reply.stderr
        answer = json.loads(reply.stdout)
        assert answer["id"] == "q1" and answer["status"] == "ok" and answer["camera"] == "garage"
    finally:
        _stop(pids)


def test_without_keep_nothing_is_left_running(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DEMO_KEEP_BROKER"}
    run = subprocess.run(
        [sys.executable, str(DEMO), "--seconds", "6", "--out", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "keep running" not in run.stdout and "next:" in run.stdout
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True)
    assert leftover.stdout == "", leftover.stdout
