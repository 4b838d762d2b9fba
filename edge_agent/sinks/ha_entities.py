"""Home Assistant entities of the node's inputs: each watch task's answer, each camera and the microphone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from edge_agent.config import Config
from edge_agent.config.agent import VoiceTaskConfig, WatchTaskConfig
from edge_agent.messages import CameraState

STATE_MAX = 250  # sensor states are cut to fit Home Assistant's 255 characters
MICROPHONE_STATES = list(get_args(CameraState))  # starting / ok / reconnecting / failed / ended, as for cameras
UTC_ISO = "%Y-%m-%dT%H:%M:%S+00:00"


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

    def camera_frame(self, name: str) -> str:
        """Retained downscaled JPEG of a camera's newest frame."""
        return self.sub(f"camera/{name}/frame")

    def camera_last_event(self, name: str) -> str:
        """Retained JSON of the newest timeline event about a camera (motion, an answer, a clip)."""
        return self.sub(f"camera/{name}/last_event")


def sensor(uid: str, name: str, topic: str, template: str, **extra: Any) -> dict[str, Any]:
    """A `sensor` component reading `template` from `topic`."""
    return {"p": "sensor", "name": name, "unique_id": uid, "state_topic": topic, "value_template": template, **extra}


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def task_availability(topics: Topics, name: str) -> dict[str, Any]:
    """A task entity is available while the node is online AND the task can answer (`task/<name>/availability`)."""
    return {
        "availability": [{"topic": topics.availability}, {"topic": topics.sub(f"task/{name}/availability")}],
        "availability_mode": "all",
    }


def _answer_entity(uid: str, task: WatchTaskConfig, topic: str) -> dict[str, Any]:
    schema, name = task.answer, _title(task.name)
    device_class = {"device_class": task.device_class} if task.device_class else {}
    if schema.get("type") == "boolean":
        template = "{{ 'ON' if value_json.value else 'OFF' }}"
        entity = {
            "p": "binary_sensor",
            "name": name,
            "unique_id": uid,
            "state_topic": topic,
            "value_template": template,
        }
        return {**entity, **device_class}
    if "enum" in schema:
        options = [str(option) for option in schema["enum"]]
        return sensor(uid, name, topic, "{{ value_json.value }}", device_class="enum", options=options)
    if schema.get("type") in ("number", "integer"):
        return sensor(uid, name, topic, "{{ value_json.value }}", state_class="measurement", **device_class)
    return sensor(
        uid,
        name,
        topic,
        f"{{{{ value_json.value | string | truncate({STATE_MAX}) }}}}",
        json_attributes_topic=topic,
        json_attributes_template="{{ {'text': value_json.value} | tojson }}",
    )


def _task_entities(config: Config, topics: Topics, task: WatchTaskConfig) -> dict[str, dict[str, Any]]:
    uid, available = f"{config.device.id}_task_{task.name}", task_availability(topics, task.name)
    entities = {f"task_{task.name}": {**_answer_entity(uid, task, topics.task(task.name)), **available}}
    entities[f"last_answer_{task.name}"] = sensor(  # not `task_...`: those keys name the task's own topics
        f"{uid}_last_answer",
        f"{_title(task.name)} answered",
        topics.task(task.name),
        f"{{{{ value_json.ts | timestamp_custom('{UTC_ISO}', false) }}}}",
        device_class="timestamp",
        icon="mdi:clock-check-outline",
    )
    if task.snapshot:
        entities[f"task_{task.name}_snapshot"] = {
            "p": "image",
            "name": f"{_title(task.name)} snapshot",
            "unique_id": f"{uid}_snapshot",
            "image_topic": topics.sub(f"task/{task.name}/snapshot"),
            "content_type": "image/jpeg",
            **available,
        }
    return entities


def tasks(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    """Per watch task: its answer, the time of its last answer and (with `snapshot`) the frame it was based on."""
    components: dict[str, dict[str, Any]] = {}
    for task in config.tasks:
        if not isinstance(task, VoiceTaskConfig):  # voice commands arrive on the shared `answer` event entity
            components.update(_task_entities(config, topics, task))
    return components


def last_event(config: Config, topics: Topics, camera: str) -> dict[str, Any]:
    """A camera's newest event as a sensor: its one-line summary, with time, kind and task as attributes."""
    topic = topics.camera_last_event(camera)
    return sensor(
        f"{config.device.id}_camera_{camera}_last_event",
        f"{_title(camera)} last event",
        topic,
        f"{{{{ value_json.summary | string | truncate({STATE_MAX}) }}}}",
        json_attributes_topic=topic,
        icon="mdi:timeline-text-outline",
    )


def cameras(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    """Per camera: a connectivity binary_sensor (on while its state is `ok`), its newest frame as an image and its
    last event (motion, an answer, a clip: see `camera/<name>/last_event`)."""
    components: dict[str, dict[str, Any]] = {}
    for camera in config.cameras:
        name, uid = camera.name, f"{config.device.id}_camera_{camera.name}"
        state = f"value_json.cameras.get('{name}')"
        components[f"camera_{name}"] = {
            **sensor(uid, f"{_title(name)} camera", topics.state, f"{{{{ 'ON' if {state} == 'ok' else 'OFF' }}}}"),
            "p": "binary_sensor",
            "device_class": "connectivity",
            "json_attributes_topic": topics.state,
            "json_attributes_template": f"{{{{ {{'state': {state}, 'error': value_json.camera_errors.get('{name}')}} "
            "| tojson }}",
            "entity_category": "diagnostic",
        }
        components[f"camera_{name}_last_event"] = last_event(config, topics, name)
        if camera.frame_publish_s > 0:
            components[f"camera_{name}_frame"] = {
                "p": "image",
                "name": f"{_title(name)} frame",
                "unique_id": f"{uid}_frame",
                "image_topic": topics.camera_frame(name),
                "content_type": "image/jpeg",
            }
    return components


def microphone(config: Config, topics: Topics) -> dict[str, dict[str, Any]]:
    """The microphone's state (ok / reconnecting / failed / ...) as an enum sensor, with the last error."""
    if config.microphone is None:
        return {}
    states = ", ".join(f"'{state}'" for state in MICROPHONE_STATES)
    return {
        "microphone": sensor(
            f"{config.device.id}_microphone",
            "Microphone",
            topics.state,
            "{% set s = value_json.microphone.state if value_json.microphone else None %}"
            f"{{{{ s if s in [{states}] else None }}}}",
            device_class="enum",
            options=list(MICROPHONE_STATES),
            json_attributes_topic=topics.state,
            json_attributes_template="{{ {'error': value_json.microphone.error if value_json.microphone else None} "
            "| tojson }}",
            icon="mdi:microphone",
            entity_category="diagnostic",
        )
    }
