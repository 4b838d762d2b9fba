"""A real Home Assistant on the rig's broker takes every entity the daemon announces: device classes, the cameras'
connectivity and frame images, the microphone's status, each task's last answer time, with no discovery error."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.homeassistant import HomeAssistant, HomeAssistantUnavailableError, install

from edge_agent.config import load_config
from edge_agent.config.ha_device_classes import BINARY_SENSOR_DEVICE_CLASSES, SENSOR_DEVICE_CLASSES
from edge_agent.sinks.ha_discovery import components

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "deploy" / "demo"
# a WARNING or ERROR line of Home Assistant's about MQTT, discovery or a template
PROBLEM = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) .*(mqtt|discovery|template)", re.IGNORECASE | re.MULTILINE)
States = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture
def ha_venv() -> Path:
    """The venv with Home Assistant; skipped only where it cannot be installed."""
    try:
        return install()
    except HomeAssistantUnavailableError as exc:
        pytest.skip(f"no Home Assistant: {exc}")


@pytest.fixture
def home_assistant(ha_venv: Path, mosquitto: Mosquitto, tmp_path: Path) -> Iterator[HomeAssistant]:
    """Home Assistant with MQTT against the rig's broker."""
    ha = HomeAssistant(ha_venv, tmp_path / "ha", mosquitto.host, mosquitto.port)
    try:
        ha.start()
        yield ha
    finally:
        ha.stop()


def node_config(write_config: Callable[..., Path], tmp_path: Path, broker: Mosquitto) -> Path:
    """Two cameras (one publishing frames every second, one without a motion gate), a looping file microphone and
    three watch tasks (one never triggered: its camera has no motion gate)."""
    return write_config(
        f"""
        device: {{id: hanode, name: Rig}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}}}
        model: {{path: {REPO / "models" / "tiny-gemma4"}}}
        cameras:
          - {{name: garage, source: {DEMO / "garage.mp4"}, fps: 2, frame_publish_s: 1}}
          - {{name: yard, source: {DEMO / "garage.mp4"}, fps: 1, frame_publish_s: 0, motion: {{enabled: false}}}}
        microphone: {{file: {DEMO / "voice.wav"}, loop: true}}
        tasks:
          - {{kind: watch, name: garage_open, camera: garage, question: "Is the garage door open?",
              device_class: garage_door, interval_s: 2, cooldown_s: 0}}
          - {{kind: watch, name: cars, camera: garage, question: "How many cars?", answer: {{type: integer}},
              interval_s: 2, cooldown_s: 0, snapshot: true}}
          - {{kind: watch, name: weather, camera: yard, question: "Weather?", answer: {{enum: [sun, rain]}}}}
        """
    )


def entities_by_name(ha: HomeAssistant) -> States:
    """HA's states keyed by (domain, friendly name)."""
    return {
        (entity_id.split(".")[0], str(state["attributes"].get("friendly_name"))): state
        for entity_id, state in ha.states().items()
    }


def wait_for(ha: HomeAssistant, ready: Callable[[States], bool], timeout_s: float) -> States:
    """The states once `ready` holds for them; AssertionError with what HA had otherwise."""
    deadline, states = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        states = entities_by_name(ha)
        if ready(states):
            return states
        time.sleep(1)
    shown = {key: value["state"] for key, value in states.items() if key[0] != "sun"}
    raise AssertionError(f"Home Assistant never got there; it has {shown}\nlog:\n{ha.log()[-3000:]}")


def test_home_assistant_registers_every_entity_the_node_announces(
    home_assistant: HomeAssistant, mosquitto: Mosquitto, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = node_config(write_config, tmp_path, mosquitto)
    expected = {(c["p"], f"Rig {c['name']}") for c in components(load_config(path)).values()}
    daemon = Daemon(path)
    try:
        states = wait_for(home_assistant, lambda states: expected <= set(states), timeout_s=90)
        assert ("image", "Rig Yard frame") not in states  # frame_publish_s: 0
        garage_open = states[("binary_sensor", "Rig Garage open")]
        assert garage_open["attributes"]["device_class"] == "garage_door"
        assert states[("binary_sensor", "Rig Garage camera")]["attributes"]["device_class"] == "connectivity"
        assert states[("sensor", "Rig Garage open answered")]["attributes"]["device_class"] == "timestamp"
        assert states[("sensor", "Rig Microphone")]["attributes"]["options"][:2] == ["starting", "ok"]

        def answered_and_connected(states: States) -> bool:
            return (
                states[("binary_sensor", "Rig Garage open")]["state"] in ("on", "off")  # the task is online
                and re.fullmatch(r"-?[\d.e+-]+", states[("sensor", "Rig Cars")]["state"]) is not None  # a number
                and re.match(r"\d{4}-\d\d-\d\dT", states[("sensor", "Rig Garage open answered")]["state"]) is not None
                and states[("binary_sensor", "Rig Garage camera")]["state"] == "on"
                and states[("sensor", "Rig Microphone")]["state"] == "ok"
                and states[("image", "Rig Garage frame")]["state"] not in ("unknown", "unavailable")
                and states[("image", "Rig Cars snapshot")]["state"] not in ("unknown", "unavailable")
            )

        states = wait_for(home_assistant, answered_and_connected, timeout_s=120)
        assert states[("sensor", "Rig Weather")]["state"] == "unavailable"  # its task has not answered yet
        picture = home_assistant.get_bytes(states[("image", "Rig Garage frame")]["attributes"]["entity_picture"])
        assert picture[:3] == b"\xff\xd8\xff"  # the JPEG the node published
    finally:
        assert daemon.stop() == 0
    states = wait_for(home_assistant, lambda s: s[("binary_sensor", "Rig Garage camera")]["state"] == "unavailable", 30)
    assert states[("binary_sensor", "Rig Garage open")]["state"] == "unavailable"  # the node said `offline`
    problems = PROBLEM.findall(home_assistant.log())
    assert not problems, "\n".join(line for line in home_assistant.log().splitlines() if PROBLEM.search(line))


def test_the_device_classes_a_task_may_take_are_home_assistants(ha_venv: Path) -> None:
    listing = """
import json
from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.sensor import NON_NUMERIC_DEVICE_CLASSES, SensorDeviceClass
print(json.dumps([[c.value for c in BinarySensorDeviceClass],
                  [c.value for c in SensorDeviceClass if c not in NON_NUMERIC_DEVICE_CLASSES]]))
"""
    done = subprocess.run([str(ha_venv / "bin" / "python"), "-c", listing], capture_output=True, text=True, check=True)
    binary, numeric = json.loads(done.stdout)
    assert set(binary) == BINARY_SENSOR_DEVICE_CLASSES
    assert set(numeric) == SENSOR_DEVICE_CLASSES
