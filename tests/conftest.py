"""Fixtures of the real test rig (see ../shared/design/TEST-RIG.md): broker, microphone, cameras."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from rig.alsa import capture_env, write_raw
from rig.binaries import require, require_library
from rig.broker import Mosquitto
from rig.camera import MjpegServer, write_video

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def state_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Daemons started by tests keep their spool in a temporary directory, never in $HOME."""
    path = tmp_path_factory.mktemp("state")
    previous = os.environ.get("STATE_DIRECTORY")
    os.environ["STATE_DIRECTORY"] = str(path)
    yield path
    if previous is None:
        del os.environ["STATE_DIRECTORY"]
    else:
        os.environ["STATE_DIRECTORY"] = previous


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One real mosquitto for the whole test session, on a free loopback port."""
    broker = Mosquitto(require("mosquitto"), tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Factory for a private broker a test may stop and restart (outage tests)."""
    brokers: list[Mosquitto] = []

    def make(extra_config: str = "", persistent: bool = False) -> Mosquitto:
        workdir = tmp_path / f"broker{len(brokers)}"
        broker = Mosquitto(require("mosquitto"), workdir, extra_config=extra_config, persistent=persistent)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def alsa_capture(tmp_path: Path) -> Callable[[np.ndarray], dict[str, str]]:
    """Factory: int16 samples -> environment whose ALSA default capture device plays them."""
    require_library("portaudio", "libportaudio2")

    def make(samples: np.ndarray) -> dict[str, str]:
        raw = write_raw(tmp_path / "mic.raw", samples)
        return capture_env(tmp_path / "home", raw)

    return make


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    """An MJPEG stream on 127.0.0.1 that a test can stop and start again."""
    server = MjpegServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    """A 3 s, 10 fps synthetic video with a moving square."""
    return write_video(tmp_path / "square.mp4", frames=30)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Factory: YAML text (dedented) -> path of a config file in a temporary directory."""

    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An (empty) directory standing in for model.path in config tests."""
    path = tmp_path / "model"
    path.mkdir()
    return path
