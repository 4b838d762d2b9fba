"""Validated configuration: one YAML file loaded into strict pydantic models."""

from edge_agent.config.agent import (
    AgentConfig,
    MqttPublishAction,
    MqttReadAction,
    SnapshotAction,
    TaskConfig,
    TimeAction,
    ToolConfig,
    VoiceTaskConfig,
    WatchTaskConfig,
)
from edge_agent.config.loader import ConfigError, ConfigIssue, load_config, parse_config
from edge_agent.config.model import ModelConfig
from edge_agent.config.node import (
    DeviceConfig,
    HealthConfig,
    LoggingConfig,
    MqttConfig,
    MqttTlsConfig,
)
from edge_agent.config.references import ReferenceImageConfig
from edge_agent.config.schema import Config
from edge_agent.config.sources import CameraConfig, CropConfig, MicrophoneConfig, MotionConfig, VadConfig
from edge_agent.config.timeline import TimelineConfig

__all__ = [
    "AgentConfig",
    "CameraConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "CropConfig",
    "DeviceConfig",
    "HealthConfig",
    "LoggingConfig",
    "MicrophoneConfig",
    "ModelConfig",
    "MotionConfig",
    "MqttConfig",
    "MqttPublishAction",
    "MqttReadAction",
    "MqttTlsConfig",
    "ReferenceImageConfig",
    "SnapshotAction",
    "TaskConfig",
    "TimeAction",
    "TimelineConfig",
    "ToolConfig",
    "VadConfig",
    "VoiceTaskConfig",
    "WatchTaskConfig",
    "load_config",
    "parse_config",
]
