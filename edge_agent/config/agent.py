"""Config sections for what the agent does: standing tasks and the tools the model may call."""

from __future__ import annotations

from difflib import get_close_matches
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import Field, SecretStr, field_validator, model_validator

from edge_agent.config.base import Identifier, Section, Topic
from edge_agent.config.ha_device_classes import BINARY_SENSOR_DEVICE_CLASSES, SENSOR_DEVICE_CLASSES
from edge_agent.config.model import ImageBudget


def _check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
    return schema


JsonSchema = Annotated[dict[str, Any], Field(json_schema_extra={"type": "object"})]


class ClipConfig(Section):
    """A watch task that asks about a clip: the camera's frames around the event instead of one frame."""

    pre_roll_s: float = Field(default=3.0, ge=0, le=120, description="Seconds of frames from before the motion event.")
    post_roll_s: float = Field(
        default=3.0, ge=0, le=120, description="Seconds of frames after the motion event (the question waits for them)."
    )
    frames: int = Field(
        default=8,
        ge=1,
        le=32,
        description="Frames given to the model, spread evenly over the clip (fewer if degraded).",
    )
    frame_budget: ImageBudget = Field(
        default=70, description="Image tokens per frame (lowered one step when degraded, never below 70)."
    )

    @model_validator(mode="after")
    def _has_a_length(self) -> ClipConfig:
        if self.pre_roll_s + self.post_roll_s <= 0:
            raise ValueError("a clip needs pre_roll_s or post_roll_s above 0")
        return self


class WatchTaskConfig(Section):
    """A standing question about a camera, answered on motion and/or on a timer."""

    kind: Literal["watch"] = Field(description="'watch': a standing question about a camera.")
    name: Identifier = Field(description="Task name, used in topics and Home Assistant.")
    camera: Identifier = Field(description="Name of the camera (from 'cameras') to look at.")
    question: str = Field(min_length=1, max_length=2000, description="The question asked about each frame.")
    answer: JsonSchema = Field(
        default_factory=lambda: {"type": "boolean"},
        description="JSON Schema of the answer: boolean -> binary_sensor, enum or number -> sensor, "
        "string -> sensor with the text as an attribute.",
    )
    on_motion: bool = Field(default=True, description="Ask when the camera's motion gate fires.")
    interval_s: float | None = Field(
        default=None, gt=0, description="Also ask every this many seconds (omit for motion only)."
    )
    cooldown_s: float = Field(default=10.0, ge=0, description="Least time between two answers.")
    snapshot: bool = Field(default=False, description="Publish the frame the answer was based on.")
    image_budget: ImageBudget | None = Field(
        default=None, description="Image tokens for this task; default: model.image_budget."
    )
    thinking: bool = Field(default=False, description="Let the model think first for this task.")
    deadline_s: float = Field(
        default=60.0, gt=0, le=3600, description="Give up on an answer not finished this long after the trigger."
    )
    references: list[Identifier] = Field(
        default_factory=list,
        max_length=8,
        description="Reference images (names from 'references') shown to the model before each frame, e.g. [rex].",
    )
    clip: ClipConfig | None = Field(
        default=None,
        description="Ask about a clip of the camera's recent frames (pre_roll_s before the motion to post_roll_s "
        "after it; on a timer or the button, the last pre_roll_s + post_roll_s) instead of one frame.",
    )
    device_class: str | None = Field(
        default=None,
        description="Home Assistant device class of the task's entity: a binary_sensor class for a boolean answer "
        "(e.g. garage_door shows Open/Closed), a numeric sensor class for a number answer.",
    )

    @field_validator("answer")
    @classmethod
    def _answer_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_json_schema(value)

    @model_validator(mode="after")
    def _has_a_trigger(self) -> WatchTaskConfig:
        if not self.on_motion and self.interval_s is None:
            raise ValueError("a watch task needs 'on_motion: true' or an 'interval_s'")
        return self

    @model_validator(mode="after")
    def _device_class_fits_the_answer(self) -> WatchTaskConfig:
        if self.device_class is None:
            return self
        kind = self.answer.get("type")
        if kind == "boolean":
            allowed, entity = BINARY_SENSOR_DEVICE_CLASSES, "binary_sensor"
        elif kind in ("number", "integer") and "enum" not in self.answer:
            allowed, entity = SENSOR_DEVICE_CLASSES, "numeric sensor"
        else:
            raise ValueError("device_class needs a boolean or number answer (an enum or text answer has none)")
        if self.device_class not in allowed:
            close = get_close_matches(self.device_class, sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"device_class '{self.device_class}' is not a Home Assistant {entity} class{hint}")
        return self


class VoiceTaskConfig(Section):
    """Spoken requests from the microphone, answered with the configured tools."""

    kind: Literal["voice"] = Field(description="'voice': utterances from the microphone.")
    name: Identifier = Field(description="Task name, used in topics and Home Assistant.")
    tools: list[Identifier] | None = Field(
        default=None, description="Names of the tools this task may call; default: all declared tools."
    )
    instructions: str | None = Field(
        default=None, max_length=4000, description="Extra system instructions for this task."
    )
    thinking: bool = Field(default=False, description="Let the model think first for this task.")
    tool_choice: Literal["auto", "required"] = Field(
        default="auto",
        description="'auto': the model decides whether to call a tool; 'required': its first reply must be a call.",
    )
    transcribe: bool = Field(
        default=True, description="Also publish a transcript of each utterance (one more, short, generation)."
    )
    max_steps: int = Field(
        default=3, ge=0, le=10, description="Rounds of tool calls whose results go back to the model."
    )
    deadline_s: float = Field(
        default=60.0, gt=0, le=3600, description="Give up on an utterance not handled this long after it ended."
    )


class AgentConfig(Section):
    """How requests share the one model."""

    queue_size: int = Field(
        default=8, ge=1, le=1000, description="Requests waiting for the model; beyond it a request is refused busy."
    )
    ask_tools: bool = Field(default=True, description="Questions from MQTT may call the declared tools.")
    ask_max_steps: int = Field(default=3, ge=0, le=10, description="Rounds of tool calls for one question.")
    confirm_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="How long a tool call waiting for confirmation stays valid."
    )
    snapshot_quality: int = Field(default=85, ge=10, le=100, description="JPEG quality of published snapshots.")
    confirm_topic: Topic | None = Field(
        default=None,
        description='Take confirmations ({"id": ...}) on this topic instead of '
        "<base_topic>/<device.id>/tools/confirm, e.g. one only an admin's login may publish to (broker ACL); the node "
        "never publishes there itself.",
    )
    confirm_user_property: dict[str, SecretStr] = Field(
        default_factory=dict,
        max_length=8,
        description="MQTT 5 user properties (name: value) a confirmation must carry, e.g. "
        "{x-confirm-token: ${CONFIRM_TOKEN}}; others are ignored and counted (health.agent.confirm_rejected).",
    )


TaskConfig = Annotated[WatchTaskConfig | VoiceTaskConfig, Field(discriminator="kind")]


class MqttPublishAction(Section):
    """Publish a templated payload to an MQTT topic (drives Zigbee2MQTT, Tasmota, ESPHome, HA)."""

    type: Literal["mqtt_publish"] = Field(description="'mqtt_publish'.")
    topic: Topic = Field(description="Topic to publish to; may use {argument} placeholders.")
    payload: str = Field(description="Payload template; {argument} placeholders take the call's arguments.")
    qos: Literal[0, 1, 2] = Field(default=1, description="MQTT QoS of the publish.")
    retain: bool = Field(default=False, description="Publish retained.")


class MqttReadAction(Section):
    """Answer with the last value seen on a subscribed MQTT topic."""

    type: Literal["mqtt_read"] = Field(description="'mqtt_read'.")
    topic: Topic = Field(description="Topic whose last value is returned.")
    max_chars: int = Field(
        default=1000,
        ge=16,
        le=100_000,
        description="Longest value (in characters) given to the model; a longer one is cut and marked as truncated.",
    )


class SnapshotAction(Section):
    """Take a fresh frame from a camera."""

    type: Literal["snapshot"] = Field(description="'snapshot'.")
    camera: Identifier = Field(description="Camera to take the frame from.")


class TimeAction(Section):
    """Return the node's local date and time."""

    type: Literal["time"] = Field(description="'time'.")


ToolAction = Annotated[MqttPublishAction | MqttReadAction | SnapshotAction | TimeAction, Field(discriminator="type")]


class ToolConfig(Section):
    """A tool the model may call; only declared tools exist."""

    name: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$", description="Function name the model uses.")
    description: str = Field(min_length=1, max_length=1000, description="What the tool does, for the model.")
    parameters: JsonSchema = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments (an object schema).",
    )
    action: ToolAction = Field(description="What a call does.")
    rate_limit_per_min: int | None = Field(
        default=None, ge=1, description="Most calls per minute; further calls are refused."
    )
    confirm: bool = Field(default=False, description="Ask for confirmation before the action runs.")

    @field_validator("parameters")
    @classmethod
    def _parameters_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError("must be a JSON Schema with 'type: object'")
        return _check_json_schema(value)
