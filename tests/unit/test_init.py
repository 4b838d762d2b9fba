"""`edge-agent init`: a commented config for the hardware and model found, which check-config accepts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.commands import init
from edge_agent.commands.init import FoundCamera, FoundMicrophone, Machine, parse_broker, render_config
from edge_agent.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "models" / "tiny-gemma4"


@pytest.fixture
def no_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's own cameras and microphones (if any) are not part of the test."""
    monkeypatch.setattr(init, "find_cameras", lambda notes: [])
    monkeypatch.setattr(init, "find_microphones", lambda notes: [])


def test_init_writes_a_config_that_check_config_accepts_and_never_overwrites_without_force(
    tmp_path: Path, no_hardware: None, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "models"
    store.mkdir()
    (store / "gemma-4-E2B-it-ONNX").symlink_to(TINY)  # a pulled model, under the name `models pull e2b` gives
    (store / "older.previous").symlink_to(TINY)
    target = tmp_path / "node" / "config.yaml"
    assert main(["init", "-o", str(target), "--dir", str(store), "--broker", "broker.lan:1884"]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    text = target.read_text()
    assert "#   - kind: watch" in text and "tasks: []" in text  # the example task is there, commented out
    assert main(["check-config", "-c", str(target)]) == 0
    config = load_config(target)
    assert config.model.path == store / "gemma-4-E2B-it-ONNX"  # the pulled model, not the `.previous` one
    assert (config.mqtt.host, config.mqtt.port, config.model.variant) == ("broker.lan", 1884, "q4")
    capsys.readouterr()
    target.write_text("# mine\n")
    assert main(["init", "-o", str(target), "--dir", str(store)]) == 1
    assert "exists; give --force" in capsys.readouterr().err
    assert target.read_text() == "# mine\n"
    assert main(["init", "-o", str(target), "--dir", str(store), "--force"]) == 0
    assert main(["check-config", "-c", str(target)]) == 0
    assert load_config(target).mqtt.host == "localhost"  # the default broker


def test_without_a_pulled_model_init_says_to_pull_one(
    tmp_path: Path, no_hardware: None, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "config.yaml"
    assert main(["init", "-o", str(target), "--dir", str(tmp_path / "empty")]) == 0
    assert "edge-agent models pull e2b" in capsys.readouterr().err
    assert f'path: "{tmp_path / "empty" / "gemma-4-E2B-it-ONNX"}"' in target.read_text()
    shutil.copytree(TINY, tmp_path / "empty" / "gemma-4-E2B-it-ONNX")  # once pulled, the same file is valid
    assert main(["check-config", "-c", str(target)]) == 0


def test_cameras_and_microphones_found_go_into_a_valid_config(tmp_path: Path) -> None:
    machine = Machine(
        cameras=[
            FoundCamera("/dev/v4l/by-id/usb-Cam_123-video-index0", "/dev/video0: HD Webcam: C270", ("MJPG 1280x720",)),
            FoundCamera("/dev/video2", "/dev/video2: unicam", ()),
        ],
        microphones=[FoundMicrophone('USB "Audio" #1', 48000, 2), FoundMicrophone("pulse", 44100, 32)],
        notes=["v4l2-ctl is not installed: every /dev/video* node is listed"],
    )
    text = render_config(machine, TINY, "q4", ("::1", 1883), pulled=True)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = load_config(path)
    assert [(c.name, c.source) for c in config.cameras] == [
        ("cam0", "/dev/v4l/by-id/usb-Cam_123-video-index0"),
        ("cam1", "/dev/video2"),
    ]
    assert config.microphone is not None and config.microphone.device == 'USB "Audio" #1'
    assert config.microphone.sample_rate == 48000 and config.tasks == []
    assert "# note: v4l2-ctl is not installed" in text and "MJPG 1280x720" in text
    before, _, task = text.partition("# tasks:\n")
    uncommented = "tasks:\n" + "".join(line.removeprefix("# ") for line in task.splitlines(keepends=True))
    example = tmp_path / "example.yaml"
    example.write_text(before.replace("tasks: []", "") + uncommented)
    assert [task.name for task in load_config(example).tasks] == ["door_open"]  # the example is valid as it is


def test_broker_addresses() -> None:
    assert parse_broker("localhost:1883") == ("localhost", 1883)
    assert parse_broker("mqtt.lan") == ("mqtt.lan", 1883)
    assert parse_broker("[fd00::2]:8883") == ("fd00::2", 8883)
    assert parse_broker("fd00::2") == ("fd00::2", 1883)
    with pytest.raises(ValueError, match="port must be a number"):
        parse_broker("host:http")
