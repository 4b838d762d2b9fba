"""`edge-agent run` with a file camera and a file microphone: motion and utterances show up, SIGTERM stops it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rig.broker import Mosquitto

REPO = Path(__file__).resolve().parents[2]


def test_daemon_sees_motion_and_hears_an_utterance(write_config: Callable[[str], Path], model_dir: Path) -> None:
    demo = REPO / "deploy" / "demo"
    config = write_config(
        f"""
        model: {{path: {model_dir}}}
        cameras:
          - name: garage
            source: {demo / "garage.mp4"}
            fps: 5
        microphone:
          file: {demo / "voice.wav"}
          realtime: false
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "-c", str(config)], stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("camera garage: motion started" in line for line in lines):
        lines.append(proc.stderr.readline())
    proc.send_signal(signal.SIGTERM)
    lines += proc.stderr.read().splitlines()
    assert proc.wait(timeout=10) == 0
    log = "\n".join(lines)
    assert "camera garage: ok" in log
    assert "camera garage: motion started" in log  # the door rolls up between 4 and 7 s
    spoken = re.search(r"voice gate: utterance (\d+\.\d)-(\d+\.\d) s \(silence\)", log)
    assert spoken is not None, log
    assert abs(float(spoken.group(1)) - 1.5) <= 0.3  # the sentence starts 1.5 s into the file
    assert "Traceback" not in log


def test_the_demo_config_runs_with_its_bundled_camera_and_voice(tmp_path: Path, mosquitto: Mosquitto) -> None:
    shutil.copytree(REPO / "deploy" / "demo", tmp_path / "demo")  # relative paths resolve from the config's folder
    model = str(REPO / "models" / "tiny-gemma4")
    env = {**os.environ, "EDGE_AGENT_MODEL_DIR": model, "DEMO_MQTT_PORT": str(mosquitto.port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "-c", str(tmp_path / "demo" / "config.yaml")],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stderr is not None
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and seen != {"motion", "utterance"}:
        line = proc.stderr.readline()
        assert "failed" not in line and "Traceback" not in line, line
        seen |= {"motion"} if "camera garage: motion started" in line else set()
        seen |= {"utterance"} if "voice gate: utterance" in line else set()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert seen == {"motion", "utterance"}
