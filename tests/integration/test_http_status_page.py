"""The status page in a real headless browser (Debian's Chromium): cameras, tasks, health and events shown from
the real daemon, and a screenshot kept as a test artifact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from paho.mqtt import publish
from rig.broker import Mosquitto, free_port
from rig.camera import write_video
from rig.daemon import Daemon

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO / "build" / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("status")
    video = write_video(tmp / "yard.mp4", frames=30)
    port = free_port()
    config = tmp / "config.yaml"
    config.write_text(
        f"""
device: {{id: page1}}
mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp / "spool.db"}}}
model: {{path: {MODEL}, max_new_tokens: 8, image_budget: 70}}
cameras:
  - {{name: yard, source: {video}, fps: 10}}
tasks:
  - {{kind: watch, name: door, camera: yard, question: "Is the door open?", on_motion: false, interval_s: 1}}
health: {{interval_s: 0.5}}
http: {{enabled: true, port: {port}}}
"""
    )
    daemon = Daemon(config)
    daemon.wait_for_lines("ready:", timeout_s=60)
    yield f"http://127.0.0.1:{port}/status"
    assert daemon.stop() == 0


def snapshot(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/data.json", timeout=10) as response:
        return dict(json.loads(response.read()))


def wait_for(url: str, condition: Any, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        data = snapshot(url)
        if condition(data):
            return data
        assert time.monotonic() < deadline, f"timed out; last snapshot {data}"
        time.sleep(0.3)


def chromium(*args: str) -> str:
    assert CHROMIUM is not None, "Chromium is not installed (deploy/os-deps.sh test installs it)"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1100,1000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_status_page_shows_the_node_in_a_real_browser(page_url: str, mosquitto: Mosquitto) -> None:
    wait_for(page_url, lambda d: d["tasks"][0]["last"] is not None and d["cameras"][0]["state"] == "ok")
    publish.single("edge_agent/page1/ask/text", "Is anyone there?", hostname=mosquitto.host, port=mosquitto.port)
    data = wait_for(page_url, lambda d: bool(d["events"]) and d["health"] is not None)
    with urllib.request.urlopen(f"{page_url}/frame/yard.jpg", timeout=10) as response:
        frame = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None and frame.shape[1] > 0

    dom = chromium("--virtual-time-budget=5000", "--dump-dom", page_url)
    assert 'data-loaded="yes"' in dom  # the script ran and drew a snapshot
    assert (
        '<div class="card camera"><h3>yard <span class="state-ok">ok</span></h3><img alt="newest frame of yard"' in dom
    )
    answer = json.dumps(data["tasks"][0]["last"]["value"])
    assert f'<td>door</td><td>watch</td><td class="value">{answer}</td>' in dom
    assert "<dt>Degradation</dt><dd>0 normal</dd>" in dom and "<dt>Model</dt><dd>tiny-gemma4 (q4)</dd>" in dom
    assert "<dt>Memory available</dt><dd>" in dom and "Is anyone there?" in dom

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    shot.unlink(missing_ok=True)
    chromium("--virtual-time-budget=5000", f"--screenshot={shot}", page_url)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1000, 1100) and float(image.std()) > 5  # not a blank page
