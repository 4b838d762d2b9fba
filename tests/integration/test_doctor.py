"""`edge-agent doctor` as a user runs it: against nothing, against the test rig, and its verdict rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from rig.binaries import require
from rig.broker import Mosquitto, free_port

from edge_agent.commands.doctor import exit_code, render_table
from edge_agent.config import HealthConfig
from edge_agent.doctor import Check
from edge_agent.doctor.inputs import check_video_devices
from edge_agent.doctor.node import check_clock, check_temperature, check_throttling
from edge_agent.health.probes import Probes

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = REPO / "models" / "tiny-gemma4"
DOCTOR = [sys.executable, "-m", "edge_agent", "doctor"]


def doctor(config: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DOCTOR, "-c", str(config), *args], capture_output=True, text=True, timeout=120, env=env)


def by_name(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    lines = json.loads(done.stdout)
    assert all(set(line) == {"name", "verdict", "detail"} for line in lines)
    return {line["name"]: line for line in lines}


def test_no_camera_no_microphone_no_broker_each_fail_clearly(write_config: Callable[..., Path], tmp_path: Path) -> None:
    port = free_port()  # nothing listens on it
    config = write_config(
        f"""
        device: {{id: lonely}}
        mqtt: {{host: 127.0.0.1, port: {port}, spool_path: {tmp_path / "spool.db"}}}
        model: {{path: {TINY_MODEL}, variant: q4}}
        cameras:
          - {{name: garage, source: /dev/video9}}
        microphone: {{device: "no-such-mic-42"}}
        """
    )
    done = doctor(config, "--json")
    assert done.returncode == 1, done.stderr
    checks = by_name(done)
    camera, mic, broker = checks["camera garage"], checks["microphone"], checks["broker"]
    assert camera["verdict"] == "fail" and "/dev/video9: no such device" in camera["detail"]
    assert mic["verdict"] == "fail"
    assert "no input device matching 'no-such-mic-42'" in mic["detail"] or "PortAudio" in mic["detail"]
    assert broker["verdict"] == "fail" and f"127.0.0.1:{port}" in broker["detail"]
    assert "Connection refused" in broker["detail"]
    assert checks["python"]["verdict"] == checks["model"]["verdict"] == "ok"

    table = doctor(config)
    assert table.returncode == 1
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "VERDICT", "DETAIL"]
    assert any(line.startswith("camera garage") and " FAIL " in line for line in lines)
    assert any(line.startswith("broker") and " FAIL " in line for line in lines)
    assert lines[-1].startswith(f"{sum(c['verdict'] == 'fail' for c in checks.values())} failed")


def test_with_the_rig_broker_camera_microphone_and_model_are_ok(
    write_config: Callable[..., Path],
    mosquitto: Mosquitto,
    video_file: Path,
    alsa_capture: Callable[[np.ndarray], dict[str, str]],
    tmp_path: Path,
) -> None:
    env = alsa_capture(np.zeros(48000, np.int16))  # ALSA's default capture device reads a file
    config = write_config(
        f"""
        device: {{id: node1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp_path / "spool.db"}}}
        model: {{path: {TINY_MODEL}, variant: q4}}
        cameras:
          - {{name: garage, source: {video_file}}}
        microphone: {{device: default, sample_rate: 48000}}
        """
    )
    done = doctor(config, "--json", env=env)
    checks = by_name(done)
    for name in ("broker", "camera garage", "model", "microphone", "memory", "onnxruntime", "python"):
        assert checks[name]["verdict"] == "ok", checks[name]
    assert "320x240 frame" in checks["camera garage"]["detail"]
    assert "sha256 match manifest.json" in checks["model"]["detail"] and "(q4)" in checks["model"]["detail"]
    assert f"127.0.0.1:{mosquitto.port}" in checks["broker"]["detail"]
    failed = any(c["verdict"] == "fail" for c in checks.values())
    assert done.returncode == (1 if failed else 0), checks


@pytest.fixture
def password_broker(make_broker: Callable[..., Mosquitto], tmp_path: Path) -> Mosquitto:
    passwords = tmp_path / "passwords"
    subprocess.run([str(require("mosquitto_passwd")), "-b", "-c", str(passwords), "agent", "right"], check=True)
    return make_broker(f"allow_anonymous false\npassword_file {passwords}\n")


@pytest.mark.parametrize(("password", "verdict"), [("right", "ok"), ("wrong", "fail")])
def test_broker_credentials_are_checked_and_the_refusal_reason_shown(
    password_broker: Mosquitto, write_config: Callable[..., Path], password: str, verdict: str
) -> None:
    config = write_config(
        f"""
        mqtt: {{host: 127.0.0.1, port: {password_broker.port}, username: agent, password: {password}}}
        model: {{path: {TINY_MODEL}}}
        """
    )
    broker = by_name(doctor(config, "--json"))["broker"]
    assert broker["verdict"] == verdict, broker
    if verdict == "fail":
        assert "the broker refused the connection: Not authorized" in broker["detail"]
    assert "user 'agent'" in broker["detail"]


def test_an_invalid_config_is_reported_with_exit_code_2(write_config: Callable[..., Path]) -> None:
    config = write_config(f"model: {{path: {TINY_MODEL}}}\nmqtt: {{prot: 1883}}\n")
    done = doctor(config, "--json")
    assert done.returncode == 2 and "mqtt.prot: unknown key" in done.stderr
    (line,) = json.loads(done.stdout)  # --json: one JSON document, on errors too
    assert line["name"] == "config" and line["verdict"] == "fail" and "mqtt.prot: unknown key" in line["detail"]
    table = doctor(config)
    assert table.returncode == 2 and table.stdout == "" and "mqtt.prot: unknown key" in table.stderr


MACHINE_CHECKS = ["python", "onnxruntime", "memory", "temperature", "throttling", "cameras", "audio inputs", "disk"]


def test_without_a_config_the_machine_is_still_checked(tmp_path: Path) -> None:
    missing = tmp_path / "etc" / "config.yaml"
    env = {**os.environ, "EDGE_AGENT_CONFIG": str(missing), "HOME": str(tmp_path)}  # HOME: no ~/.asoundrc
    done = subprocess.run([*DOCTOR, "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    lines = json.loads(done.stdout)
    assert [line["name"] for line in lines] == ["config", *MACHINE_CHECKS, "clock"]
    config = lines[0]
    assert config["verdict"] == "fail"
    assert f"no config found at {missing} (named by $EDGE_AGENT_CONFIG)" in config["detail"]
    assert "edge-agent init" in config["detail"] and "deploy/install.sh" in config["detail"]
    checks = by_name(done)
    assert checks["python"]["verdict"] == "ok" and "would use CPUExecutionProvider" in checks["onnxruntime"]["detail"]
    assert " MB available of " in checks["memory"]["detail"]

    del env["EDGE_AGENT_CONFIG"]
    table = subprocess.run([*DOCTOR, "-c", str(missing)], capture_output=True, text=True, timeout=120, env=env)
    assert table.returncode == 1
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["CHECK", "VERDICT", "DETAIL"]
    assert rows[1].startswith("config") and f"no config found at {missing} (named by -c)" in rows[1]
    assert rows[-1].startswith("1 failed")  # the config: the machine itself has nothing that fails here


def test_video_devices_of_a_node_without_a_config(tmp_path: Path) -> None:
    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    dev_root.mkdir()
    (none,) = check_video_devices(sys_root, dev_root)
    assert none.verdict == "warn" and "no V4L2 device" in none.detail and "rpicam-vid" in none.detail
    (sys_root / "video0").mkdir(parents=True)
    (sys_root / "video0" / "name").write_text("USB Camera\n")
    (dev_root / "video0").touch(mode=0o660)
    (found,) = check_video_devices(sys_root, dev_root)
    assert found.verdict == "ok" and f"{dev_root / 'video0'} (USB Camera)" in found.detail


def test_a_corrupted_model_file_fails_by_name(write_config: Callable[..., Path], tmp_path: Path) -> None:
    model = tmp_path / "model"
    subprocess.run(["cp", "-r", str(TINY_MODEL), str(model)], check=True)
    graph = model / "onnx" / "decoder_model_merged_q4.onnx_data"
    data = bytearray(graph.read_bytes())
    data[100] ^= 0xFF
    graph.write_bytes(bytes(data))
    config = write_config(f"model: {{path: {model}, variant: q4}}\nmqtt: {{port: {free_port()}}}\n")
    checks = by_name(doctor(config, "--json"))
    assert checks["model"]["verdict"] == "fail"
    assert "decoder_model_merged_q4.onnx_data: sha256 does not match" in checks["model"]["detail"]
    assert checks["memory"]["verdict"] == "warn"


def fake_sys(root: Path, celsius: float, throttled: int | None = None) -> Probes:
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(f"{int(celsius * 1000)}\n")
    (zone / "type").write_text("cpu-thermal\n")
    if throttled is not None:
        flags = root / "sys/devices/platform/soc/soc:firmware/get_throttled"
        flags.parent.mkdir(parents=True)
        flags.write_text(f"{throttled:x}\n")
    return Probes(root=root, vcgencmd=None)


@pytest.mark.parametrize(("celsius", "verdict"), [(55.0, "ok"), (81.0, "warn"), (85.0, "fail"), (92.5, "fail")])
def test_temperature_against_the_configured_thresholds(tmp_path: Path, celsius: float, verdict: str) -> None:
    check = check_temperature(fake_sys(tmp_path, celsius), HealthConfig())
    assert check.verdict == verdict and f"{celsius:.1f} °C (cpu-thermal)" in check.detail


@pytest.mark.parametrize(
    ("raw", "verdict", "words"),
    [
        (0x0, "ok", "none (0x0)"),
        (0x50000, "warn", "since boot: throttled, under_voltage"),  # happened earlier, fine now
        (0x8, "warn", "now: soft_temperature_limit"),
        (0x50005, "fail", "now: throttled, under_voltage"),
    ],
)
def test_pi_throttling_now_fails_since_boot_warns(tmp_path: Path, raw: int, verdict: str, words: str) -> None:
    check = check_throttling(fake_sys(tmp_path, 50.0, raw))
    assert check.verdict == verdict and words in check.detail, check


def test_clock_unset_fails_and_unknown_ntp_warns() -> None:
    assert check_clock(now=0.0, ntp=lambda: (True, "timedatectl")).verdict == "fail"  # 1970: no RTC, no NTP
    assert check_clock(now=1.8e9, ntp=lambda: (True, "timedatectl")).verdict == "ok"
    assert check_clock(now=1.8e9, ntp=lambda: (False, "timedatectl")).verdict == "warn"
    unknown = check_clock(now=1.8e9, ntp=lambda: (None, "timedatectl is not installed"))
    assert unknown.verdict == "warn" and "timedatectl is not installed" in unknown.detail


def test_exit_code_and_table() -> None:
    fine, odd, broken = Check("a", "ok", "fine"), Check("b", "warn", "odd"), Check("c", "fail", "broken")
    assert exit_code([fine, odd]) == 0 and exit_code([fine, odd], strict=True) == 1
    assert exit_code([fine, broken]) == 1 and exit_code([fine]) == exit_code([fine], strict=True) == 0
    assert render_table([fine, odd, broken]).splitlines()[-1] == "1 failed, 1 warning(s), 1 ok"
