"""Pure functions building Home Assistant's device-based MQTT discovery for this node."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent import __version__
from edge_agent.config import Config
from edge_agent.config.agent import VoiceTaskConfig, WatchTaskConfig

ORIGIN = {"name": "edge-agent", "sw": __version__, "url": "https://github.com/edge-agent/edge-agent"}
EVENT_TYPES = ["answer", "voice_command"]
TEXT_MAX = 255  # Home Assistant's longest state
STATE_MAX = 250  # sensor states are cut to fit Home Assistant's 255 characters


@dataclass(frozen=True)
class Topics:
    """Every topic of one node, under `<mqtt.base_topic>/<device.id>/`."""

    base: str

    @classmethod
    def of(cls, config: Config) -> Topics:
        """The topics for a config."""
        return cls(f"{config.mqtt.base_topic}/{config.device.id}")

    def sub(self, suffix: str) -> str:
        """`<base>/<suffix>`."""
        return f"{self.base}/{suffix}"

    @property
    def availability(self) -> str:
        """Retained `online` / `offline`."""
        return self.sub("availability")

    @property
    def state(self) -> str:
        """Retained JSON: what the node is and does."""
        return self.sub("state")

    @property
    def health(self) -> str:
        """Retained JSON: temperature, memory, spool."""
        return self.sub("health")

    @property
    def event(self) -> str:
        """Non-retained JSON events for Home Assistant's event entity."""
        return self.sub("event")

    def task(self, name: str) -> str:
        """Results of one task."""
        return self.sub(f"task/{name}")


def discovery_topic(config: Config) -> str:
    """`<discovery_prefix>/device/<device.id>/config`."""
    return f"{config.mqtt.discovery_prefix}/device/{config.device.id}/config"


def _sensor(uid: str, name: str, topic: str, template: str, **extra: Any) -> dict[str, Any]:
    return {"p": "sensor", "name": name, "unique_id": uid, "state_topic": topic, "value_template": template, **extra}


def _node_sensors(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    uid = config.device.id
    diagnostic = {"entity_category": "diagnostic"}
    measure = {"state_class": "measurement", **diagnostic}
    return {
        "cpu_temperature": _sensor(
            f"{uid}_cpu_temperature",
            "CPU temperature",
            topics.health,
            "{{ value_json.temperature_c }}",
            device_class="temperature",
            unit_of_measurement="°C",
            **measure,
        ),
        "memory_available": _sensor(
            f"{uid}_memory_available",
            "Memory available",
            topics.health,
            "{{ value_json.memory_available_mb }}",
            device_class="data_size",
            unit_of_measurement="MB",
            **measure,
        ),
        "model": _sensor(
            f"{uid}_model",
            "Model",
            topics.state,
            "{{ value_json.model.label if value_json.model.loaded else 'not loaded' }}",
            icon="mdi:brain",
            **diagnostic,
        ),
        "degradation": _sensor(
            f"{uid}_degradation",
            "Degradation",
            topics.state,
            "{{ value_json.degradation.name }}",
            json_attributes_topic=topics.state,
            json_attributes_template="{{ value_json.degradation | tojson }}",
            icon="mdi:thermometer-alert",
            **diagnostic,
        ),
    }


def _queue_sensors(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    uid = config.device.id
    diagnostic = {"entity_category": "diagnostic"}
    measure = {"state_class": "measurement", **diagnostic}
    return {
        "queue_depth": _sensor(
            f"{uid}_queue_depth", "Requests waiting", topics.health, "{{ value_json.agent.queue_depth }}", **measure
        ),
        "decode_speed": _sensor(
            f"{uid}_decode_speed",
            "Decode speed",
            topics.health,
            "{{ value_json.agent.decode_tokens_per_s }}",
            unit_of_measurement="tokens/s",
            icon="mdi:speedometer",
            **measure,
        ),
        "spool_depth": _sensor(
            f"{uid}_spool_depth", "Spooled results", topics.health, "{{ value_json.spool_depth }}", **measure
        ),
        "spool_dropped": _sensor(
            f"{uid}_spool_dropped",
            "Dropped results",
            topics.health,
            "{{ value_json.spool_dropped }}",
            state_class="total_increasing",
            **diagnostic,
        ),
        "spool_problem": {  # on while the spool file cannot be written (results wait in memory)
            **_sensor(
                f"{uid}_spool_problem",
                "Spool problem",
                topics.health,
                "{{ 'OFF' if value_json.spool_writable else 'ON' }}",
            ),
            "p": "binary_sensor",
            "device_class": "problem",
            "json_attributes_topic": topics.health,
            "json_attributes_template": "{{ {'error': value_json.spool_error, 'corrupt_files_moved_aside': "
            "value_json.spool_corrupt, 'results_in_memory': value_json.spool_memory} | tojson }}",
            **diagnostic,
        },
    }


def _diagnostics(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    return _node_sensors(config, topics) | _queue_sensors(config, topics)


def _controls(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    uid = config.device.id
    return {
        "ask": {
            "p": "text",
            "name": "Ask",
            "unique_id": f"{uid}_ask",
            "command_topic": topics.sub("ask/text"),
            "min": 0,
            "max": TEXT_MAX,
            "mode": "text",
            "icon": "mdi:chat-question",
        },
        "answer": {
            "p": "event",
            "name": "Answer",
            "unique_id": f"{uid}_answer",
            "state_topic": topics.event,
            "event_types": list(EVENT_TYPES),
            "icon": "mdi:chat",
        },
        "analyze": {
            "p": "button",
            "name": "Analyze now",
            "unique_id": f"{uid}_analyze",
            "command_topic": topics.sub("analyze"),
            "payload_press": "PRESS",
            "icon": "mdi:eye-refresh",
        },
        **(_listen(config, topics) if config.microphone and config.microphone.vad.mode == "triggered" else {}),
    }


def _listen(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    """A button that makes a microphone in 'triggered' mode listen for one utterance (no wake word)."""
    return {
        "listen": {
            "p": "button",
            "name": "Listen",
            "unique_id": f"{config.device.id}_listen",
            "command_topic": topics.sub("listen"),
            "payload_press": "PRESS",
            "icon": "mdi:microphone",
        }
    }


def _answer_entity(uid: str, task: WatchTaskConfig, topic: str) -> dict[str, Any]:
    schema = task.answer
    name = task.name.replace("_", " ").capitalize()
    if schema.get("type") == "boolean":
        template = "{{ 'ON' if value_json.value else 'OFF' }}"
        return {"p": "binary_sensor", "name": name, "unique_id": uid, "state_topic": topic, "value_template": template}
    if "enum" in schema:
        options = [str(option) for option in schema["enum"]]
        return _sensor(uid, name, topic, "{{ value_json.value }}", device_class="enum", options=options)
    if schema.get("type") in ("number", "integer"):
        return _sensor(uid, name, topic, "{{ value_json.value }}", state_class="measurement")
    return _sensor(
        uid,
        name,
        topic,
        f"{{{{ value_json.value | string | truncate({STATE_MAX}) }}}}",
        json_attributes_topic=topic,
        json_attributes_template="{{ {'text': value_json.value} | tojson }}",
    )


def _tasks(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    components: dict[str, dict[str, Any]] = {}
    for task in config.tasks:
        if isinstance(task, VoiceTaskConfig):
            continue  # voice commands arrive on the shared `answer` event entity
        uid = f"{config.device.id}_task_{task.name}"
        components[f"task_{task.name}"] = _answer_entity(uid, task, topics.task(task.name))
        if task.snapshot:
            components[f"task_{task.name}_snapshot"] = {
                "p": "image",
                "name": f"{task.name.replace('_', ' ').capitalize()} snapshot",
                "unique_id": f"{uid}_snapshot",
                "image_topic": topics.sub(f"task/{task.name}/snapshot"),
                "content_type": "image/jpeg",
            }
    return components


def components(config: Config) -> dict[str, dict[str, Any]]:
    """Every entity of this node, keyed by component id."""
    topics = Topics.of(config)
    return {**_diagnostics(config, topics), **_controls(config, topics), **_tasks(config, topics)}


def device_payload(config: Config, cmps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The device-based discovery payload (`dev`, `o`, `cmps`, shared availability)."""
    return {
        "dev": {
            "ids": [f"edge_agent_{config.device.id}"],
            "name": config.device.display_name,
            "mf": "edge-agent",
            "mdl": "Gemma 4 edge node",
            "sw": __version__,
        },
        "o": dict(ORIGIN),
        "avty_t": Topics.of(config).availability,
        "qos": 1,
        "cmps": {key: dict(value) for key, value in cmps.items()},
    }


def platforms(cmps: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Component id -> platform, the part remembered between runs to remove entities later."""
    return {key: str(value["p"]) for key, value in cmps.items()}


def discovery_messages(config: Config, previous: Mapping[str, str]) -> list[bytes]:
    """Payloads to publish in order: first one removing components that left the config, then the current one."""
    cmps = components(config)
    gone = {key: {"p": platform} for key, platform in previous.items() if key not in cmps}
    messages = [json.dumps(device_payload(config, {**cmps, **gone})).encode()] if gone else []
    messages.append(json.dumps(device_payload(config, cmps)).encode())
    return messages
