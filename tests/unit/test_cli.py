"""The `edge-agent` command: exit codes and messages as a user sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent import __version__
from edge_agent.cli import main

EDGE_AGENT = [sys.executable, "-m", "edge_agent"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"edge-agent {__version__}"


def test_check_config_valid(
    write_config: Callable[[str], Path], model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(f"device: {{id: node1}}\nmodel: {{path: {model_dir}}}\n")
    assert main(["check-config", "-c", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK: device 'node1'")


def test_check_config_invalid_exits_2_with_path_and_line(
    write_config: Callable[[str], Path], model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(f"model:\n  path: {model_dir}\n  max_new_tokens: -5\n")
    assert main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "model.max_new_tokens: must be >= 1 (got -5) (config.yaml:3)" in err


def test_check_config_json_hides_secrets(
    write_config: Callable[[str], Path], model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(f"model: {{path: {model_dir}}}\nmqtt: {{username: u, password: topsecret}}\n")
    assert main(["check-config", "-c", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["mqtt"]["username"] == "u"
    assert "topsecret" not in out


def test_config_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"device", "mqtt", "model", "cameras", "microphone", "tasks", "tools", "health"} <= set(schema["properties"])
    assert schema["required"] == ["model"]


def test_unknown_verb_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["deploy"])  # no such verb
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_models_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["models"])
    assert info.value.code == 2
    assert "list,pull,verify,remove,manifest" in capsys.readouterr().err


def test_run_with_a_bad_config_exits_2_without_traceback(write_config: Callable[[str], Path]) -> None:
    path = write_config("model: {path: /nonexistent}\n")
    done = subprocess.run([*EDGE_AGENT, "run", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "model.path: directory not found: /nonexistent (config.yaml:1)" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_stops_cleanly_on_sigterm_with_journald_lines(write_config: Callable[[str], Path], model_dir: Path) -> None:
    path = write_config(f"device: {{id: node1}}\nmodel: {{path: {model_dir}}}\n")
    env = {**os.environ, "JOURNAL_STREAM": "8:1234"}
    proc = subprocess.Popen([*EDGE_AGENT, "run", "-c", str(path)], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("<6>edge_agent.app: edge-agent ") and "device 'node1'" in first
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "<6>edge_agent.app: stopped" in proc.stderr.read()


def test_run_logs_json_lines_when_asked(write_config: Callable[[str], Path], model_dir: Path) -> None:
    path = write_config(f"model: {{path: {model_dir}}}\nlogging: {{format: json, level: DEBUG}}\n")
    proc = subprocess.Popen([*EDGE_AGENT, "run", "-c", str(path)], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    entries = [json.loads(proc.stderr.readline())]
    while entries[-1]["logger"] != "edge_agent.app":  # asyncio's own debug lines come first
        entries.append(json.loads(proc.stderr.readline()))
    entry = entries[-1]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert entry["level"] == "info" and entry["logger"] == "edge_agent.app"
    assert entry["msg"].startswith("edge-agent ") and entry["ts"].endswith("+00:00")


def test_a_node_without_microphone_never_imports_sounddevice() -> None:
    code = (
        "import sys, edge_agent.cli, edge_agent.app, edge_agent.config; "
        "import edge_agent.model.runtime.engine, edge_agent.model.runtime.generate; "
        "assert 'sounddevice' not in sys.modules, 'sounddevice imported without a microphone'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
