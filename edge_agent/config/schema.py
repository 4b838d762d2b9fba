"""The root config model and the checks that span sections."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from edge_agent.config.agent import (
    AgentConfig,
    SnapshotAction,
    TaskConfig,
    ToolConfig,
    VoiceTaskConfig,
    WatchTaskConfig,
)
from edge_agent.config.base import Section
from edge_agent.config.http import HttpConfig
from edge_agent.config.model import ModelConfig
from edge_agent.config.node import DeviceConfig, HealthConfig, LoggingConfig, MqttConfig
from edge_agent.config.references import ReferenceImageConfig
from edge_agent.config.sources import CameraConfig, MicrophoneConfig
from edge_agent.config.timeline import TimelineConfig

KeyPath = tuple[str | int, ...]


class Config(Section):
    """The whole edge-agent configuration (one YAML file)."""

    device: DeviceConfig = Field(default_factory=DeviceConfig, description="Identity of this node.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="The MQTT broker link.")
    model: ModelConfig = Field(description="The Gemma 4 model to run.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras to watch.")
    microphone: MicrophoneConfig | None = Field(
        default=None, description="The microphone; omit on a node without one (PortAudio not needed)."
    )
    tasks: list[TaskConfig] = Field(
        default_factory=list, description="Standing questions ('watch') and voice handling ('voice')."
    )
    tools: list[ToolConfig] = Field(default_factory=list, description="Tools the model may call.")
    agent: AgentConfig = Field(default_factory=AgentConfig, description="How requests share the model.")
    health: HealthConfig = Field(default_factory=HealthConfig, description="Self-supervision thresholds.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Log output.")
    http: HttpConfig = Field(
        default_factory=HttpConfig, description="OpenAI- and Ollama-compatible HTTP API and status page (off)."
    )
    timeline: TimelineConfig = Field(
        default_factory=TimelineConfig, description="The local timeline of answers, motion, utterances and tool calls."
    )
    references: list[ReferenceImageConfig] = Field(
        default_factory=list, description="Named reference images (a person, a pet, a car) tasks can show the model."
    )


def _duplicates(section: str, names: list[str]) -> Iterator[tuple[KeyPath, str]]:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            yield (section, index, "name"), f"duplicate name '{name}'"
        seen.add(name)


def _grammar_problem(tool: ToolConfig) -> str | None:
    """Why the tool-call grammar cannot express this tool's parameters (constrained decoding needs it), if so."""
    from edge_agent.messages import ToolSpec
    from edge_agent.prompt.tool_grammar import ToolSchemaError, tool_call_grammar

    try:
        tool_call_grammar([ToolSpec(tool.name, tool.description, tool.parameters)], quote_id=0, end_id=1)
    except ToolSchemaError as exc:
        return f"{exc}; supported: type, enum/const, number bounds, items/minItems/maxItems, properties/required"
    return None


def _unknown_references(config: Config) -> list[tuple[KeyPath, str]]:
    """Reference names a task uses that the `references` section does not define."""
    known = {r.name for r in config.references}
    shown = ", ".join(sorted(known)) or "none"
    problems: list[tuple[KeyPath, str]] = []
    for index, task in enumerate(config.tasks):
        for pos, name in enumerate(getattr(task, "references", None) or ()):  # watch tasks may name references
            if name not in known:
                problems.append(
                    (("tasks", index, "references", pos), f"no reference named '{name}' in 'references' ({shown})")
                )
    return problems


def cross_check(config: Config) -> list[tuple[KeyPath, str]]:
    """Problems that involve more than one section, each with the key path it belongs to."""
    problems: list[tuple[KeyPath, str]] = []
    problems += _duplicates("cameras", [c.name for c in config.cameras])
    problems += _duplicates("tasks", [t.name for t in config.tasks])
    problems += _duplicates("tools", [t.name for t in config.tools])
    problems += _duplicates("references", [r.name for r in config.references])
    cameras = {c.name for c in config.cameras}
    tools = {t.name for t in config.tools}
    voice = [index for index, task in enumerate(config.tasks) if isinstance(task, VoiceTaskConfig)]
    problems += [
        (("tasks", index, "kind"), "only one voice task: the microphone has one stream") for index in voice[1:]
    ]
    problems += _unknown_references(config)
    for index, task in enumerate(config.tasks):
        if isinstance(task, WatchTaskConfig) and task.camera not in cameras:
            problems.append((("tasks", index, "camera"), f"no camera named '{task.camera}' in 'cameras'"))
        if isinstance(task, VoiceTaskConfig):
            if config.microphone is None:
                problems.append((("tasks", index, "kind"), "a voice task needs a 'microphone' section"))
            for pos, tool in enumerate(task.tools or []):
                if tool not in tools:
                    problems.append((("tasks", index, "tools", pos), f"no tool named '{tool}' in 'tools'"))
    if config.microphone is not None:
        for pos, camera in enumerate(config.microphone.vad.arm_on_motion):
            if camera not in cameras:
                path: KeyPath = ("microphone", "vad", "arm_on_motion", pos)
                problems.append((path, f"no camera named '{camera}' in 'cameras'"))
    for index, tool_config in enumerate(config.tools):
        if problem := _grammar_problem(tool_config):
            problems.append((("tools", index, "parameters"), problem))
        action = tool_config.action
        if isinstance(action, SnapshotAction) and action.camera not in cameras:
            problems.append((("tools", index, "action", "camera"), f"no camera named '{action.camera}' in 'cameras'"))
    return problems
