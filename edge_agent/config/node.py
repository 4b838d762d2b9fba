"""Config sections for the node itself: device identity, MQTT link, model, health and logging."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from edge_agent.config.base import (
    AnyPath,
    FilePath,
    Identifier,
    Section,
    Topic,
    default_device_id,
)

ThrottleFlag = Literal["under_voltage", "frequency_capped", "throttled", "soft_temperature_limit"]


class DeviceConfig(Section):
    """Who this node is on the network and in Home Assistant."""

    id: Identifier = Field(
        default_factory=default_device_id,
        description="Node id used in MQTT topics and Home Assistant unique ids; defaults to the "
        "hostname with every character outside [a-zA-Z0-9_-] replaced by '_'.",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Human-readable name shown in Home Assistant; defaults to the id.",
    )

    @property
    def display_name(self) -> str:
        """The configured name, or the id when none is set."""
        return self.name or self.id


class MqttTlsConfig(Section):
    """TLS for the broker connection; an empty mapping means TLS with the system CA store."""

    ca: FilePath | None = Field(default=None, description="CA certificate (PEM) that signed the broker's certificate.")
    cert: FilePath | None = Field(default=None, description="Client certificate (PEM) for brokers that require one.")
    key: FilePath | None = Field(default=None, description="Private key (PEM) of the client certificate.")
    key_password: SecretStr | None = Field(
        default=None, description="Password of the private key, if it is encrypted (use ${ENV_VAR})."
    )
    insecure: bool = Field(
        default=False,
        description="Skip the broker hostname check (the certificate chain is still verified).",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> MqttTlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("'cert' and 'key' must be given together")
        return self


class MqttConfig(Section):
    """The MQTT broker everything is published to."""

    host: str = Field(default="localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(default=1883, gt=0, le=65535, description="Broker TCP port (8883 is usual with TLS).")
    username: str | None = Field(default=None, description="User name, if the broker requires one.")
    password: SecretStr | None = Field(
        default=None,
        description="Password; write ${MQTT_PASSWORD} to take it from the environment, not the file.",
    )
    tls: MqttTlsConfig | None = Field(default=None, description="TLS settings; omit for plain TCP.")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT protocol version: 5 (default) or 3.1.1 for old brokers."
    )
    keepalive: int = Field(
        default=60, ge=5, le=3600, description="Keepalive in seconds; the last will fires after ~1.5x."
    )
    client_id: str | None = Field(
        default=None, max_length=128, description="MQTT client id; defaults to 'edge-agent-<device.id>'."
    )
    session_expiry_s: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="MQTT 5: how long the broker keeps the node's session while it is away (its subscriptions, "
        "and questions sent to it meanwhile, delivered when it is back); 0: a clean session at every connect.",
    )
    base_topic: Topic = Field(default="edge_agent", description="Prefix of every topic: <base_topic>/<device.id>/...")
    discovery_prefix: Topic = Field(default="homeassistant", description="Home Assistant MQTT discovery prefix.")
    discovery: bool = Field(default=True, description="Publish Home Assistant MQTT discovery messages.")
    qos: Literal[0, 1, 2] = Field(default=1, description="QoS of results (1: kept in the spool until the broker acks).")
    reconnect_max_s: float = Field(
        default=60.0, ge=1, le=3600, description="Longest wait between reconnection attempts (backoff from 1 s)."
    )
    spool_path: AnyPath | None = Field(
        default=None,
        description="SQLite file of the outbound spool; default: $STATE_DIRECTORY/spool.db under systemd, "
        "else ~/.local/state/edge-agent/spool.db.",
    )
    spool_max_messages: int = Field(
        default=10000, ge=10, le=10_000_000, description="Most results kept while the broker is away (oldest dropped)."
    )
    spool_max_age_h: float = Field(
        default=168.0, gt=0, le=8760, description="Results older than this many hours are dropped from the spool."
    )
    spool_max_mb: float = Field(
        default=100.0, ge=0.01, le=1e6, description="Most MB of results kept while the broker is away (oldest dropped)."
    )
    spool_fsync: bool = Field(
        default=True,
        description="Flush every result to disk before sending it (survives power loss); false: faster, "
        "survives a crash of the daemon but may lose the last results on power loss.",
    )
    ask_queue: int = Field(
        default=4, ge=1, le=1000, description="Questions that may wait for the model; more are answered 'busy'."
    )
    ask_max_bytes: int = Field(
        default=16384,
        ge=256,
        le=16777216,
        description="Largest question payload; bigger ones get an error reply. A base64 image or recording "
        "takes 4/3 of its size: raise this to send them.",
    )
    ask_max_image_bytes: int = Field(
        default=1048576,
        ge=1024,
        le=8388608,
        description="Largest image (JPEG/PNG, before base64) a question may carry.",
    )
    ask_max_audio_s: float = Field(
        default=30.0, gt=0, le=30, description="Longest recording (WAV/FLAC) a question may carry, in seconds."
    )
    ask_timeout_s: float = Field(
        default=120.0, gt=0, le=3600, description="Longest time to answer a question before replying 'error'."
    )
    reply_topic_prefixes: list[Annotated[str, Field(pattern=r"^[^$+#\x00][^+#\x00]*$")]] = Field(
        default_factory=lambda: ["replies/"],
        description="Prefixes (no '+', '#', leading '$') an MQTT 5 question's response_topic must start with; never "
        "the node's tree (<base_topic>/), the discovery prefix, a topic the node subscribes to or a tool's topic, "
        "whatever this says; [] refuses every response_topic. A refusal, with the reason, goes to .../answer.",
    )

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _password_needs_user(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("'password' is set but 'username' is not")
        return self


class HealthConfig(Section):
    """How the node watches its own temperature and memory."""

    interval_s: float = Field(default=10.0, gt=0, le=3600, description="Seconds between health readings.")
    temperature_high_c: float = Field(
        default=80.0, gt=0, lt=150, description="Temperature at which the node starts to degrade."
    )
    temperature_critical_c: float = Field(
        default=85.0, gt=0, lt=150, description="Temperature at which everything but health pauses."
    )
    memory_low_mb: int = Field(default=300, ge=0, description="Available memory (MB) below which the node degrades.")
    temperature_hysteresis_c: float = Field(
        default=5.0,
        ge=0,
        le=50,
        description="Recovery starts only below temperature_high_c minus this many degrees.",
    )
    memory_hysteresis_mb: int = Field(
        default=200, ge=0, description="Recovery starts only above memory_low_mb plus this many MB available."
    )
    throttle_flags: list[ThrottleFlag] = Field(
        default_factory=lambda: list[ThrottleFlag](("frequency_capped", "throttled", "soft_temperature_limit")),
        description="Raspberry Pi throttling flags that, while set now, count as too hot.",
    )
    step_interval_s: float = Field(
        default=30.0, gt=0, le=3600, description="Least time between two steps down the degradation ladder."
    )
    cooldown_s: float = Field(
        default=120.0,
        gt=0,
        le=86400,
        description="Time the readings must stay below the thresholds (minus hysteresis) before each step back up.",
    )
    watch_interval_factor: float = Field(
        default=2.0, ge=1, le=100, description="Watch-task intervals are multiplied by this from degradation level 2."
    )
    admission_margin_pct: float = Field(
        default=25.0,
        ge=0,
        le=400,
        description="Admission: extra memory, in percent of the model files plus KV cache, for onnxruntime's arena "
        "and activations.",
    )
    admission_margin_mb: int = Field(
        default=150, ge=0, description="Admission: fixed extra memory (MB) on top of the percentage margin."
    )
    prometheus_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve Prometheus metrics on this port; off when unset."
    )
    prometheus_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the Prometheus endpoint binds to (localhost by default; 0.0.0.0 for every interface).",
    )
    watchdog_stall_s: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="Longest time one stage (capture, inference, publish) may stay busy before the systemd watchdog "
        "pings stop and systemd restarts the service; idle time never counts.",
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> HealthConfig:
        if self.temperature_critical_c <= self.temperature_high_c:
            raise ValueError("'temperature_critical_c' must be above 'temperature_high_c'")
        if self.temperature_hysteresis_c >= self.temperature_high_c:
            raise ValueError("'temperature_hysteresis_c' must be below 'temperature_high_c'")
        return self


class LoggingConfig(Section):
    """Log output; the --log-level and --log-format flags override these."""

    level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    format: Literal["text", "json"] = Field(
        default="text", description="'text' lines, or 'json' (one JSON object per line, for machines)."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
