"""Config loading: valid files load, and every kind of mistake names its key path and line."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edge_agent.config import Config, ConfigError, load_config, parse_config
from edge_agent.config.base import sanitize_id

REPO = Path(__file__).resolve().parents[2]
WriteConfig = Callable[..., Path]


def issues_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return [issue.render(info.value.source) for issue in info.value.issues]


def test_minimal_config_gets_documented_defaults(write_config: WriteConfig, model_dir: Path) -> None:
    config = load_config(write_config(f"model:\n  path: {model_dir}\n"), env={})
    assert config.model.variant == "q4"
    assert config.mqtt.base_topic == "edge_agent"
    assert config.mqtt.discovery_prefix == "homeassistant"
    assert config.mqtt.port == 1883 and config.mqtt.protocol == "5"
    assert config.device.id == sanitize_id(socket.gethostname().split(".")[0])
    assert config.device.display_name == config.device.id
    assert config.cameras == [] and config.microphone is None and config.tasks == [] and config.tools == []


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [("garage-pi", "garage-pi"), ("my pi.local", "my_pi_local"), ("kök", "k_k"), ("...", "edge-agent")],
)
def test_device_id_is_sanitised(hostname: str, expected: str) -> None:
    assert sanitize_id(hostname) == expected


def test_unknown_key_names_path_line_and_suggests(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(f"model:\n  path: {model_dir}\nmqtt:\n  host: broker\n  prot: 1884\n")
    assert issues_of(path) == ["mqtt.prot: unknown key (did you mean 'port'?) (config.yaml:5)"]


def test_wrong_type_in_a_list_item(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model:
          path: {model_dir}
        cameras:
          - name: front
            source: 0
          - name: back
            source: 1
            fps: fast
        """
    )
    assert issues_of(path) == ["cameras[1].fps: must be a number (got 'fast') (config.yaml:8)"]


def test_out_of_range_number(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(f"model:\n  path: {model_dir}\ncameras:\n  - name: c\n    source: 0\n    fps: 0\n")
    assert issues_of(path) == ["cameras[0].fps: must be > 0 (got 0) (config.yaml:6)"]


def test_yaml_syntax_error_names_the_line(write_config: WriteConfig) -> None:
    path = write_config("model:\n  path: /x\nmqtt:\n  host: [broker\n  port: 1\n")
    [issue] = issues_of(path)
    assert issue.startswith("(top level): YAML syntax error:")
    assert issue.endswith("(config.yaml:6)") or issue.endswith("(config.yaml:5)")


def test_missing_required_key_points_at_its_section(write_config: WriteConfig) -> None:
    path = write_config("device:\n  id: a\nmodel:\n  variant: fp32\n")
    assert issues_of(path) == ["model.path: required key is missing (config.yaml:3)"]


def test_missing_section_at_top_level(write_config: WriteConfig) -> None:
    assert issues_of(write_config("device: {id: a}\n")) == ["model: required key is missing (config.yaml)"]


def test_unset_environment_variable(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(f"model:\n  path: {model_dir}\nmqtt:\n  username: u\n  password: ${{MQTT_PASSWORD}}\n")
    assert issues_of(path) == ["mqtt.password: environment variable MQTT_PASSWORD is not set (config.yaml:5)"]


def test_environment_values_defaults_and_escapes(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model:
          path: {model_dir}
        mqtt:
          host: ${{BROKER:-localhost}}
          port: ${{BROKER_PORT}}
          username: ${{USER_NAME}}
          password: "${{MQTT_PASSWORD}}"
        device:
          name: costs $$5
        """
    )
    config = load_config(path, env={"BROKER_PORT": "8883", "USER_NAME": "me", "MQTT_PASSWORD": "s3cr$t"})
    assert config.mqtt.host == "localhost"
    assert config.mqtt.port == 8883
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "s3cr$t"
    assert "s3cr" not in repr(config.mqtt)
    assert config.device.name == "costs $5"


def test_secret_values_are_never_echoed_in_errors(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(f"model:\n  path: {model_dir}\nmqtt:\n  username: u\n  password: [hunter2]\n")
    [issue] = issues_of(path)
    assert issue.startswith("mqtt.password: must be a string") and "hunter2" not in issue


def test_every_problem_is_reported_at_once(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model:
          path: {model_dir}
          variant: q5
          image_budget: 300
        mqtt:
          port: 70000
        """
    )
    assert issues_of(path) == [
        "model.variant: must be one of 'q4', 'q4f16', 'fp16', 'fp32', 'int8', 'uint8', 'quantized' "
        "or 'bnb4' (got 'q5') (config.yaml:3)",
        "model.image_budget: must be one of 70, 140, 280, 560 or 1120 (got 300) (config.yaml:4)",
        "mqtt.port: must be <= 65535 (got 70000) (config.yaml:6)",
    ]


def test_relative_paths_are_taken_from_the_config_directory(write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "ca.pem").write_text("x")
    path = write_config("model:\n  path: models/m\nmqtt:\n  tls:\n    ca: ca.pem\n")
    config = load_config(path, env={})
    assert config.model.path == tmp_path / "models" / "m"
    assert config.mqtt.tls is not None and config.mqtt.tls.ca == tmp_path / "ca.pem"


def test_missing_files_and_directories_are_named(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config("model:\n  path: nowhere\nmqtt:\n  tls: {ca: no.pem}\n")
    assert issues_of(path) == [
        f"model.path: directory not found: {tmp_path / 'nowhere'} (config.yaml:2)",
        f"mqtt.tls.ca: file not found: {tmp_path / 'no.pem'} (config.yaml:4)",
    ]


def test_duplicate_keys_are_errors(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(f"model:\n  path: {model_dir}\nmqtt:\n  port: 1\n  port: 2\n")
    assert issues_of(path) == ["mqtt.port: duplicate key (config.yaml:5)"]


def test_unquoted_on_is_explained(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        tools:
          - name: light
            description: Light on.
            action: {{type: mqtt_publish, topic: z2m/light/set, payload: ON}}
        """
    )
    [issue] = issues_of(path)
    assert issue.startswith("tools[0].action.payload: must be a string (YAML read True")
    assert issue.endswith("(config.yaml:5)")


def test_task_kind_and_cross_references(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        cameras:
          - {{name: yard, source: 0}}
        tasks:
          - kind: watch
            name: door
            camera: garage
            question: Is the door open?
          - kind: voice
            name: voice
            tools: [light]
          - kind: watch
            name: door
            camera: yard
            question: Anyone there?
        """
    )
    assert issues_of(path) == [
        "tasks[0].camera: no camera named 'garage' in 'cameras' (config.yaml:7)",
        "tasks[1].kind: a voice task needs a 'microphone' section (config.yaml:9)",
        "tasks[1].tools[0]: no tool named 'light' in 'tools' (config.yaml:11)",
        "tasks[2].name: duplicate name 'door' (config.yaml:13)",
    ]


def test_bad_task_kind_and_bad_schemas(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        tasks:
          - kind: wach
            name: x
        tools:
          - name: t
            description: d
            parameters: {{type: object, properties: {{a: {{type: strin}}}}}}
            action: {{type: time}}
        """
    )
    issues = issues_of(path)
    assert issues[0] == "tasks[0].kind: must be one of 'watch', 'voice' (got 'wach') (config.yaml:3)"
    assert issues[1].startswith("tools[0].parameters: not a valid JSON Schema:")
    assert issues[1].endswith("(config.yaml:8)")


def test_non_mapping_file_and_unreadable_file(write_config: WriteConfig, tmp_path: Path) -> None:
    assert issues_of(write_config("- a\n- b\n")) == [
        "(top level): the file must be a mapping of sections (config.yaml:1)"
    ]
    assert issues_of(tmp_path / "absent.yaml")[0].startswith("(top level): cannot read the file:")


def test_example_config_is_valid_and_matches_the_published_schema(tmp_path: Path) -> None:
    example = REPO / "deploy" / "config.example.yaml"
    config = load_config(example, env={"MQTT_PASSWORD": "pw", "EDGE_AGENT_MODEL_DIR": str(tmp_path)})
    assert [t.name for t in config.tasks] == ["garage_door", "voice"]
    data = yaml.safe_load(example.read_text())
    data["mqtt"]["password"] = "pw"
    jsonschema.validate(data, Config.model_json_schema())


def _fields_without_description(schema: dict[str, Any]) -> list[str]:
    missing = []
    for name, definition in {"Config": schema, **schema.get("$defs", {})}.items():
        for field, spec in definition.get("properties", {}).items():
            if not spec.get("description"):
                missing.append(f"{name}.{field}")
    return missing


def test_every_field_is_documented() -> None:
    assert _fields_without_description(Config.model_json_schema()) == []


def test_parse_config_accepts_protocol_as_number(model_dir: Path) -> None:
    config = parse_config(f"model: {{path: {model_dir}}}\nmqtt: {{protocol: 5}}\n", env={})
    assert config.mqtt.protocol == "5"
    assert parse_config(f"model: {{path: {model_dir}}}\nmqtt: {{protocol: 3.1.1}}\n", env={}).mqtt.protocol == ("3.1.1")


def test_readme_reference_is_in_sync_with_the_models() -> None:
    from edge_agent.config.docs import replace_block

    readme = (REPO / "README.md").read_text()
    assert replace_block(readme) == readme, "config reference out of date: run `make docs`"


def test_relative_camera_files_are_taken_from_the_config_directory(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {tmp_path}}}
        cameras:
          - {{name: a, source: clips/garage.mp4}}
          - {{name: b, source: "rtsp://cam.local/stream"}}
          - {{name: c, source: "exec:rpicam-vid -t 0 --codec mjpeg -o -"}}
          - {{name: d, source: /dev/video0}}
          - {{name: e, source: 0}}
        """
    )
    sources = [c.source for c in load_config(path, env={}).cameras]
    assert sources == [
        str(tmp_path / "clips" / "garage.mp4"),
        "rtsp://cam.local/stream",
        "exec:rpicam-vid -t 0 --codec mjpeg -o -",
        "/dev/video0",
        0,
    ]


def test_tool_parameters_the_call_grammar_cannot_express_and_a_second_voice_task(
    write_config: WriteConfig, model_dir: Path
) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        microphone: {{device: default}}
        tasks:
          - {{kind: voice, name: one}}
          - {{kind: voice, name: two}}
        tools:
          - name: lookup
            description: Look a city up.
            parameters: {{type: object, properties: {{city: {{type: string, pattern: "^[A-Z]"}}}}}}
            action: {{type: time}}
        """
    )
    issues = issues_of(path)
    assert any(i.startswith("tasks[1].kind: only one voice task") for i in issues)
    assert any(
        i.startswith("tools[0].parameters: tool 'lookup': unsupported keyword 'pattern'") and "config.yaml:9" in i
        for i in issues
    ), issues
