"""Home Assistant discovery payloads follow the HA docs (a JSON Schema written from them) for every config."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from rig.ha_schema import SCHEMA, check, expand

from edge_agent.config import Config, load_config
from edge_agent.sinks.ha_discovery import components, discovery_messages, discovery_topic, platforms

TASKS = """
cameras:
  - {name: door, source: "http://127.0.0.1:9/door.mjpg"}
microphone: {device: default}
tasks:
  - {kind: watch, name: door_open, camera: door, question: "Is the door open?"}
  - {kind: watch, name: people, camera: door, question: "How many people?", answer: {type: integer}}
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
    assert body["availability_topic"] == "edge_agent/node-1/availability"
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
        {**good, "avty": [{"t": "x"}]},  # availability topic and list together
        {**good, "cmps": {**good["cmps"], "answer": {**good["cmps"]["answer"], "event_types": []}}},
        {**good, "cmps": {**good["cmps"], "ask": {**good["cmps"]["ask"], "max": 1000}}},
        {**good, "cmps": {**good["cmps"], "x": {"p": "sensor", "unique_id": "x"}}},  # sensor without state topic
        {**good, "cmps": {**good["cmps"], "bad id": {"p": "sensor"}}},
    ]
    for payload_dict in broken:
        expanded = expand(payload_dict)
        assert list(Draft202012Validator(SCHEMA).iter_errors(expanded)), payload_dict
