"""Config loading: valid files load, and every kind of mistake names its key path and line."""

from __future__ import annotations

import re
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
    assert issues_of(path) == [
        "tools[0].action.payload: must be a string (got True) (YAML reads unquoted ON/OFF/yes/no as booleans: "
        'quote them, e.g. "ON" on line 5) (config.yaml:5)'
    ]


def test_an_unquoted_on_off_enum_names_the_yaml_cause(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        tools:
          - name: light
            description: Switch the light.
            parameters: {{type: object, properties: {{state: {{type: string, enum: [ON, OFF]}}}}}}
            action: {{type: mqtt_publish, topic: z2m/light/set, payload: x}}
        """
    )
    [issue] = issues_of(path)
    assert issue.startswith("tools[0].parameters: tool 'light': a string 'enum' that is not a list of strings")
    assert issue.endswith(
        '(YAML reads unquoted ON/OFF/yes/no as booleans: quote them, e.g. "ON" on line 5) (config.yaml:5)'
    )
    quoted = write_config(path.read_text().replace("[ON, OFF]", '["ON", "OFF"]'), name="quoted.yaml")
    assert load_config(quoted, env={}).tools[0].parameters["properties"]["state"]["enum"] == ["ON", "OFF"]


def test_a_true_that_is_not_a_yaml_word_boolean_gets_no_yaml_hint(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(f"model: {{path: {model_dir}}}\ndevice: {{name: true}}\n")
    assert issues_of(path) == ["device.name: must be a string (got True) (config.yaml:2)"]


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


def test_environment_values_and_cross_references_come_with_the_other_errors(
    write_config: WriteConfig, model_dir: Path
) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        mqtt:
          port: ${{BROKER_PORT}}
          password: "${{MQTT_PASSWORD}}"
        cameras:
          - {{name: yard, source: 0, fps: 0}}
        tasks:
          - {{kind: watch, name: door, camera: garage, question: Is it open, intervall_s: 5}}
          - {{kind: watch, name: yard, camera: yard, question: Anyone there}}
        """
    )
    assert issues_of(path) == [
        "mqtt.port: environment variable BROKER_PORT is not set (config.yaml:3)",
        "mqtt.password: environment variable MQTT_PASSWORD is not set (config.yaml:4)",
        "cameras[0].fps: must be > 0 (got 0) (config.yaml:6)",
        "tasks[0].intervall_s: unknown key (did you mean 'interval_s'?) (config.yaml:8)",
        "tasks[0].camera: no camera named 'garage' in 'cameras' (config.yaml:8)",
    ]


def test_an_invalid_section_still_counts_for_the_references_to_it(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        microphone: {{file: missing.wav}}
        tasks:
          - {{kind: voice, name: voice, tools: [light, fan]}}
        tools:
          - {{name: light, description: Light., action: {{type: mqtt_publish, topic: z/l/set, payload: x, qos: 7}}}}
        """
    )
    issues = issues_of(path)
    assert issues[0].startswith("microphone.file: file not found:")
    assert issues[1:] == [
        "tasks[0].tools[1]: no tool named 'fan' in 'tools' (config.yaml:4)",
        "tools[0].action.qos: must be one of 0, 1 or 2 (got 7) (config.yaml:6)",
    ]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "tasks:\n  - {kind: voice, name: v, tool_choise: required}",
            "tasks[0].tool_choise: unknown key (did you mean 'tool_choice'?)",
        ),
        (
            "tools:\n  - {name: t, description: d, action: {type: mqtt_read, topic: a/b, max_char: 20}}",
            "tools[0].action.max_char: unknown key (did you mean 'max_chars'?)",
        ),
        ("camras: []", "camras: unknown key (did you mean 'cameras'?)"),
        ("microphone: {vad: {treshold: 0.5}}", "microphone.vad.treshold: unknown key (did you mean 'threshold'?)"),
    ],
)
def test_misspelled_keys_get_a_suggestion_in_every_section(
    write_config: WriteConfig, model_dir: Path, section: str, expected: str
) -> None:
    path = write_config(f"model: {{path: {model_dir}}}\n{section}\n")
    assert any(issue.startswith(expected) for issue in issues_of(path)), issues_of(path)


def test_a_max_new_tokens_below_the_tool_call_floor_is_a_warning(
    write_config: WriteConfig, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edge_agent.agent.converse import CALL_TOKENS
    from edge_agent.config.advice import TOOL_CALL_MIN_TOKENS

    assert TOOL_CALL_MIN_TOKENS == CALL_TOKENS  # the floor the agent applies is the one the warning names
    tools = "tools:\n  - {name: now, description: The time., action: {type: time}}\n"
    path = write_config(f"model: {{path: {model_dir}, max_new_tokens: 32}}\nagent: {{ask_tools: true}}\n{tools}")
    with caplog.at_level("WARNING", logger="edge_agent.config.loader"):
        load_config(path, env={})
    assert [r.getMessage() for r in caplog.records] == [
        "config.yaml: model.max_new_tokens is 32, but a step that may call a tool (questions on ask) gets at least "
        "128 tokens so that no call is cut short; set it to 128 or more to make it the real limit"
    ]
    caplog.clear()
    for text in (
        f"model: {{path: {model_dir}, max_new_tokens: 128}}\n{tools}",
        f"model: {{path: {model_dir}, max_new_tokens: 32}}\n",
        f"model: {{path: {model_dir}, max_new_tokens: 32}}\nagent: {{ask_tools: false}}\n{tools}",
    ):
        with caplog.at_level("WARNING", logger="edge_agent.config.loader"):
            load_config(write_config(text), env={})
    assert caplog.records == []


def test_a_service_config_with_a_model_under_home_is_a_warning(
    write_config: WriteConfig, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.config.advice import protect_home_warnings

    monkeypatch.delenv("INVOCATION_ID", raising=False)
    config = load_config(write_config(f"model: {{path: {model_dir}}}\n"), env={})
    home = config.model_copy(update={"model": config.model.model_copy(update={"path": Path("/home/pi/models/e2b")})})
    [warning] = protect_home_warnings(home, Path("/etc/edge-agent/config.yaml"))
    assert warning.startswith("model.path /home/pi/models/e2b is under /home, which the edge-agent service cannot read")
    assert protect_home_warnings(home, model_dir / "config.yaml") == []  # a config of one's own, run by hand
    assert protect_home_warnings(config, Path("/etc/edge-agent/config.yaml")) == []
    monkeypatch.setenv("INVOCATION_ID", "0123")  # run by systemd: /home is hidden, so the model is not found
    [issue] = issues_of(write_config("model: {path: /home/nobody-here/models/e2b}\n"))
    assert "ProtectHome=yes" in issue and issue.startswith("model.path: directory not found: /home/nobody-here")


@pytest.mark.parametrize(
    "sections",
    [
        "cameras: {name: a, source: 0}\ntasks: [{kind: watch, name: t, camera: a, question: q}]",
        "tasks: voice\ntools: [1, 2]",
        "microphone: 5\ntasks: [{kind: voice, name: v, tools: [x]}]",
        "tools: [{name: t, action: [1]}]\ntasks: [{kind: voice, name: v, tools: [t]}]",
        "cameras: [7, {name: a}]\nmicrophone: {vad: {arm_on_motion: [a, b]}}",
    ],
)
def test_malformed_sections_are_config_errors_never_crashes(write_config: WriteConfig, sections: str) -> None:
    issues = issues_of(write_config(f"model: [1]\n{sections}\n"))
    assert issues and all(re.match(r"^[\w.\[\]()' -]+: .+ \(config\.yaml(:\d+)?\)$", issue) for issue in issues), issues


def test_an_unquoted_off_where_a_boolean_is_meant_gets_no_yaml_hint(write_config: WriteConfig, model_dir: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        cameras: [{{name: a, source: 0}}]
        tasks: [{{kind: watch, name: t, camera: a, question: q, on_motion: off}}]
        """
    )
    assert issues_of(path) == ["tasks[0]: a watch task needs 'on_motion: true' or an 'interval_s' (config.yaml:3)"]
