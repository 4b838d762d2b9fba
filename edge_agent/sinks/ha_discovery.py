"""Pure functions building Home Assistant's device-based MQTT discovery for this node."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from edge_agent import __version__
from edge_agent.config import Config
from edge_agent.sinks.ha_entities import Topics, cameras, microphone, sensor, tasks

ORIGIN = {"name": "edge-agent", "sw": __version__, "url": "https://github.com/edge-agent/edge-agent"}
EVENT_TYPES = ["answer", "voice_command"]
TEXT_MAX = 255  # Home Assistant's longest state
__all__ = ["Topics", "components", "device_payload", "discovery_messages", "discovery_topic", "platforms"]


def discovery_topic(config: Config) -> str:
    """`<discovery_prefix>/device/<device.id>/config`."""
    return f"{config.mqtt.discovery_prefix}/device/{config.device.id}/config"


def _node_sensors(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    uid = config.device.id
    diagnostic = {"entity_category": "diagnostic"}
    measure = {"state_class": "measurement", **diagnostic}
    return {
        "cpu_temperature": sensor(
            f"{uid}_cpu_temperature",
            "CPU temperature",
            topics.health,
            "{{ value_json.temperature_c }}",
            device_class="temperature",
            unit_of_measurement="°C",
            **measure,
        ),
        "memory_available": sensor(
            f"{uid}_memory_available",
            "Memory available",
            topics.health,
            "{{ value_json.memory_available_mb }}",
            device_class="data_size",
            unit_of_measurement="MB",
            **measure,
        ),
        "model": sensor(
            f"{uid}_model",
            "Model",
            topics.state,
            "{{ value_json.model.label if value_json.model.loaded else 'not loaded' }}",
            icon="mdi:brain",
            **diagnostic,
        ),
        "degradation": sensor(
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
        "queue_depth": sensor(
            f"{uid}_queue_depth", "Requests waiting", topics.health, "{{ value_json.agent.queue_depth }}", **measure
        ),
        "decode_speed": sensor(
            f"{uid}_decode_speed",
            "Decode speed",
            topics.health,
            "{{ value_json.agent.decode_tokens_per_s }}",
            unit_of_measurement="tokens/s",
            icon="mdi:speedometer",
            **measure,
        ),
        "spool_depth": sensor(
            f"{uid}_spool_depth", "Spooled results", topics.health, "{{ value_json.spool_depth }}", **measure
        ),
        "spool_dropped": sensor(
            f"{uid}_spool_dropped",
            "Dropped results",
            topics.health,
            "{{ value_json.spool_dropped }}",
            state_class="total_increasing",
            **diagnostic,
        ),
        "spool_problem": {  # on while the spool file cannot be written (results wait in memory)
            **sensor(
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


def components(config: Config) -> dict[str, dict[str, Any]]:
    """Every entity of this node, keyed by component id."""
    topics = Topics.of(config)
    inputs = cameras(config, topics) | microphone(config, topics) | tasks(config, topics)
    return {**_diagnostics(config, topics), **_controls(config, topics), **inputs}


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
        "avty": [{"t": Topics.of(config).availability}],  # per component, task entities add their own
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
