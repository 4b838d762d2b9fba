"""Home Assistant discovery payloads follow the HA docs (a JSON Schema written from them) for every config."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from rig.ha_schema import SCHEMA, check, expand

from edge_agent.config import Config, ConfigError, load_config
from edge_agent.sinks.ha_discovery import components, discovery_messages, discovery_topic, platforms

TASKS = """
cameras:
  - {name: door, source: "http://127.0.0.1:9/door.mjpg"}
microphone: {device: default}
tasks:
  - {kind: watch, name: door_open, camera: door, question: "Is the door open?", device_class: garage_door}
  - {kind: watch, name: people, camera: door, question: "How many people?", answer: {type: integer}}
  - {kind: watch, name: heat, camera: door, question: "How hot?", answer: {type: number}, device_class: temperature}
  - {kind: watch, name: weather, camera: door, question: "Weather?", answer: {enum: [sun, rain, snow]}}
  - {kind: watch, name: describe, camera: door, question: "What happens?", answer: {type: string}, snapshot: true}
  - {kind: voice, name: commands}
"""


@pytest.fixture
def make_config(write_config: Callable[..., Path], model_dir: Path) -> Callable[[str], Config]:
    def make(extra: str = "") -> Config:
        text = f"device: {{id: node-1, name: Hall}}\nmodel: {{path: {model_dir}}}\n{extra}"
        return load_config(write_config(text))

    return make


def test_the_default_node_announces_diagnostics_and_controls(make_config: Callable[[str], Config]) -> None:
    config = make_config("")
    (payload,) = discovery_messages(config, {})
    body = check(payload)
    assert discovery_topic(config) == "homeassistant/device/node-1/config"
    assert body["device"]["identifiers"] == ["edge_agent_node-1"] and body["device"]["name"] == "Hall"
    assert body["origin"]["name"] == "edge-agent"
    assert body["availability"] == [{"topic": "edge_agent/node-1/availability"}]  # HA merges it into components
    assert "availability_topic" not in body
    cmps = body["components"]
    assert set(cmps) == {
        "cpu_temperature",
        "memory_available",
        "model",
        "degradation",
        "queue_depth",
        "decode_speed",
        "spool_depth",
        "spool_dropped",
        "spool_problem",
        "ask",
        "answer",
        "analyze",
    }
    assert cmps["ask"]["platform"] == "text" and cmps["ask"]["command_topic"] == "edge_agent/node-1/ask/text"
    assert cmps["answer"]["platform"] == "event" and cmps["answer"]["event_types"] == ["answer", "voice_command"]
    assert cmps["analyze"]["platform"] == "button" and cmps["analyze"]["command_topic"] == "edge_agent/node-1/analyze"
    assert cmps["cpu_temperature"]["state_topic"] == "edge_agent/node-1/health"
    assert cmps["queue_depth"]["value_template"] == "{{ value_json.agent.queue_depth }}"
    assert cmps["decode_speed"]["unit_of_measurement"] == "tokens/s"
    assert all(c["entity_category"] == "diagnostic" for k, c in cmps.items() if k not in ("ask", "answer", "analyze"))


def test_each_task_gets_the_entity_its_answer_calls_for(make_config: Callable[[str], Config]) -> None:
    config = make_config(TASKS)
    (payload,) = discovery_messages(config, {})
    cmps = check(payload)["components"]
    assert cmps["task_door_open"]["platform"] == "binary_sensor"
    assert cmps["task_door_open"]["state_topic"] == "edge_agent/node-1/task/door_open"
    assert cmps["task_people"]["platform"] == "sensor" and cmps["task_people"]["state_class"] == "measurement"
    assert cmps["task_weather"]["device_class"] == "enum" and cmps["task_weather"]["options"] == ["sun", "rain", "snow"]
    assert cmps["task_describe"]["platform"] == "sensor" and "json_attributes_topic" in cmps["task_describe"]
    assert cmps["task_describe_snapshot"]["platform"] == "image"
    assert cmps["task_describe_snapshot"]["image_topic"] == "edge_agent/node-1/task/describe/snapshot"
    assert not any(key.startswith("task_commands") for key in cmps)  # voice goes to the `answer` event entity
    unique_ids = [c["unique_id"] for c in cmps.values()]
    assert len(unique_ids) == len(set(unique_ids))


def test_a_task_that_left_the_config_is_removed_then_the_device_is_resent(
    make_config: Callable[[str], Config],
) -> None:
    before = make_config(TASKS)
    after = make_config("")
    first, second = discovery_messages(after, platforms(components(before)))
    removal = check(first)["components"]
    assert removal["task_door_open"] == {"platform": "binary_sensor"}
    assert removal["task_describe_snapshot"] == {"platform": "image"}
    assert "unique_id" in removal["ask"]  # entities that stay are sent whole
    assert not any(key.startswith("task_") for key in check(second)["components"])
    assert discovery_messages(after, platforms(components(after))) == [second]  # nothing to remove: one message


def test_the_schema_rejects_what_home_assistant_rejects(make_config: Callable[[str], Config]) -> None:
    (payload,) = discovery_messages(make_config(TASKS), {})
    good = json.loads(payload)
    broken = [
        {k: v for k, v in good.items() if k != "o"},  # origin is mandatory for device discovery
        {**good, "avty_t": "x"},  # availability topic and list together
        {**{k: v for k, v in good.items() if k != "avty"}, "avty_t": "x"},  # merged into task entities with a list
        {**good, "cmps": {**good["cmps"], "answer": {**good["cmps"]["answer"], "event_types": []}}},
        {**good, "cmps": {**good["cmps"], "ask": {**good["cmps"]["ask"], "max": 1000}}},
        {**good, "cmps": {**good["cmps"], "x": {"p": "sensor", "unique_id": "x"}}},  # sensor without state topic
        {**good, "cmps": {**good["cmps"], "bad id": {"p": "sensor"}}},
    ]
    for payload_dict in broken:
        expanded = expand(payload_dict)
        assert list(Draft202012Validator(SCHEMA).iter_errors(expanded)), payload_dict


def test_device_classes_cameras_microphone_and_answer_times(make_config: Callable[[str], Config]) -> None:
    (payload,) = discovery_messages(make_config(TASKS), {})
    cmps = check(payload)["components"]
    assert cmps["task_door_open"]["device_class"] == "garage_door"  # Open/Closed in Home Assistant
    assert cmps["task_heat"]["device_class"] == "temperature" and "device_class" not in cmps["task_people"]
    camera = cmps["camera_door"]
    assert camera["platform"] == "binary_sensor" and camera["device_class"] == "connectivity"
    assert camera["state_topic"] == "edge_agent/node-1/state" and "'door'" in camera["value_template"]
    frame = cmps["camera_door_frame"]
    assert frame["platform"] == "image" and frame["image_topic"] == "edge_agent/node-1/camera/door/frame"
    microphone = cmps["microphone"]
    assert microphone["device_class"] == "enum" and {"ok", "reconnecting", "failed"} <= set(microphone["options"])
    answered = cmps["last_answer_door_open"]
    assert answered["device_class"] == "timestamp" and answered["state_topic"] == "edge_agent/node-1/task/door_open"
    assert not any(key.startswith("last_answer_commands") for key in cmps)
    last_event = cmps["camera_door_last_event"]
    assert (
        last_event["platform"] == "sensor" and last_event["state_topic"] == "edge_agent/node-1/camera/door/last_event"
    )
    assert "value_json.summary" in last_event["value_template"] and last_event["json_attributes_topic"]


def test_task_entities_also_follow_the_tasks_own_availability(make_config: Callable[[str], Config]) -> None:
    (payload,) = discovery_messages(make_config(TASKS), {})
    cmps = check(payload)["components"]
    for key in ("task_door_open", "task_people", "task_describe", "task_describe_snapshot"):
        task = key.removeprefix("task_").removesuffix("_snapshot")
        assert cmps[key]["availability"] == [
            {"topic": "edge_agent/node-1/availability"},
            {"topic": f"edge_agent/node-1/task/{task}/availability"},
        ], key
        assert cmps[key]["availability_mode"] == "all"
    assert "availability" not in cmps["cpu_temperature"] and "availability" not in cmps["camera_door"]


def test_a_camera_that_publishes_no_frames_has_no_image(make_config: Callable[[str], Config]) -> None:
    config = make_config('cameras: [{name: door, source: "http://127.0.0.1:9/x.mjpg", frame_publish_s: 0}]')
    cmps = check(discovery_messages(config, {})[0])["components"]
    assert "camera_door" in cmps and "camera_door_frame" not in cmps


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("{device_class: garage}", "not a Home Assistant binary_sensor class (did you mean 'garage_door'?)"),
        ("{device_class: temperature}", "not a Home Assistant binary_sensor class"),
        ("{answer: {type: integer}, device_class: door}", "not a Home Assistant numeric sensor class"),
        ("{answer: {type: integer}, device_class: timestamp}", "not a Home Assistant numeric sensor class"),
        ("{answer: {type: string}, device_class: door}", "device_class needs a boolean or number answer"),
        ("{answer: {enum: [a, b]}, device_class: enum}", "device_class needs a boolean or number answer"),
    ],
)
def test_a_device_class_that_does_not_fit_the_answer_is_a_config_error(
    make_config: Callable[[str], Config], task: str, message: str
) -> None:
    base = '{kind: watch, name: t, camera: door, question: "?"}'
    merged = base[:-1] + ", " + task[1:]
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(f'cameras: [{{name: door, source: "http://127.0.0.1:9/x.mjpg"}}]\ntasks: [{merged}]')


def test_frame_publishing_is_off_or_at_most_once_a_second(make_config: Callable[[str], Config]) -> None:
    with pytest.raises(ConfigError, match=re.escape("must be 0 (off) or at least 1 second")):
        make_config('cameras: [{name: door, source: "http://127.0.0.1:9/x.mjpg", frame_publish_s: 0.2}]')
