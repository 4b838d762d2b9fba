"""Home Assistant discovery on a real broker: sent on connect, resent after HA's birth, removals across restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from paho.mqtt import publish
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.ha_schema import check
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
TOPIC = "homeassistant/device/disc1/config"
WATCH = f"""
cameras:
  - {{name: garage, source: {REPO / "deploy" / "demo" / "garage.mp4"}, fps: 2}}
tasks:
  - {{kind: watch, name: garage_open, camera: garage, question: "Is the garage door open?"}}
"""


def config(write_config: Callable[..., Path], tmp_path: Path, broker: Mosquitto, extra: str, name: str) -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    text = f"""
device: {{id: disc1}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}}}
model: {{path: {tmp_path / "model"}}}
{extra}"""
    return write_config(text, name=name)


def test_discovery_is_resent_after_the_birth_message_and_removes_tasks_that_left(
    write_config: Callable[..., Path], tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sub = Subscriber(mosquitto.host, mosquitto.port, [TOPIC])
    first = Daemon(config(write_config, tmp_path, mosquitto, WATCH, "with_task.yaml"))
    try:
        sub.wait_for(lambda messages: len(messages) >= 1, timeout_s=60)
        payload = check(sub.messages[0].payload)
        assert payload["components"]["task_garage_open"]["platform"] == "binary_sensor"
        assert not sub.messages[0].retain  # resent on HA's birth message instead of retained
        sent = time.monotonic()
        publish.single("homeassistant/status", "online", hostname=mosquitto.host, port=mosquitto.port)
        sub.wait_for(lambda messages: len(messages) >= 2, timeout_s=30)
        assert time.monotonic() - sent >= 0.9  # after a short random delay, not at once
        check(sub.messages[1].payload)
    finally:
        assert first.stop() == 0

    second = Daemon(config(write_config, tmp_path, mosquitto, "", "without_task.yaml"))
    try:
        messages = sub.wait_for(lambda messages: len(messages) >= 4, timeout_s=60)
        removal, current = (check(m.payload)["components"] for m in messages[2:4])
        assert removal["task_garage_open"] == {"platform": "binary_sensor"}
        assert "task_garage_open" not in current and "cpu_temperature" in current
    finally:
        assert second.stop() == 0
        sub.close()
