"""`edge-agent devices`: listing from sysfs, grabbing a frame, recording a clip through ALSA."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from rig.camera import MjpegServer
from rig.speech import to_int16

from edge_agent import cli
from edge_agent.commands import devices as devices_command
from edge_agent.sources.discovery import list_video_nodes

EDGE_AGENT = [sys.executable, "-m", "edge_agent"]


def test_video_nodes_come_from_sysfs_with_stable_aliases(tmp_path: Path) -> None:
    sys_root, dev_root, alias_dir = tmp_path / "sys", tmp_path / "dev", tmp_path / "dev" / "edge-agent"
    for number, name in ((10, "bcm2835-isp"), (0, "USB Camera: USB Camera")):
        (sys_root / f"video{number}").mkdir(parents=True)
        (sys_root / f"video{number}" / "name").write_text(name + "\n")
    alias_dir.mkdir(parents=True)
    (dev_root / "video0").touch()
    (alias_dir / "cam0").symlink_to(dev_root / "video0")
    nodes = list_video_nodes(sys_root, dev_root, (alias_dir,), with_formats=False)
    assert [(n.device, n.name, n.aliases) for n in nodes] == [
        (str(dev_root / "video0"), "USB Camera: USB Camera", (str(alias_dir / "cam0"),)),
        (str(dev_root / "video10"), "bcm2835-isp", ()),
    ]
    assert list_video_nodes(tmp_path / "absent") == []


def test_grab_a_frame_from_a_stream(mjpeg_server: MjpegServer, tmp_path: Path) -> None:
    out = tmp_path / "frame.jpg"
    done = subprocess.run(
        [*EDGE_AGENT, "devices", "--grab", mjpeg_server.url, "-o", str(out)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "saved a 320x240 frame" in done.stdout
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (240, 320, 3)


def test_an_image_of_40000_by_40000_pixels_is_one_clear_line(tmp_path: Path) -> None:
    """More pixels than OpenCV decodes: a camera (and `--grab`) says so in one line, never a traceback."""
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("1", (40000, 40000)).save(big)  # 200 kB on disk, 1.6 gigapixels
    done = subprocess.run([*EDGE_AGENT, "devices", "--grab", str(big)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {big}: not a readable image (too many pixels for OpenCV's limit (CV_IO_MAX_IMAGE_PIXELS))"
    )


def test_grab_from_a_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*EDGE_AGENT, "devices", "--grab", str(tmp_path / "none.mp4")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.strip() == f"error: {tmp_path / 'none.mp4'}: no such file"


def test_record_two_seconds_through_alsa(alsa_capture, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = np.arange(48000 * 4) / 48000
    env = alsa_capture(to_int16(0.3 * np.sin(2 * np.pi * 200 * t)))
    out = tmp_path / "clip.wav"
    done = subprocess.run(
        [*EDGE_AGENT, "devices", "--record", "default", "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2") / 32768
    assert len(samples) >= 2 * 16000
    assert 0.25 < np.abs(samples[1000:]).max() < 0.35


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("ALSA lib ")]  # alsa-lib's own chatter


def test_record_from_a_missing_device_fails_in_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "clip.wav"
    env = {**os.environ, "HOME": str(tmp_path)}
    started = time.monotonic()
    done = subprocess.run(
        [*EDGE_AGENT, "devices", "--record", "no-such-mic-42", "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    (line,) = _errors(done.stderr)
    assert line.startswith("error: no input device matching 'no-such-mic-42' (inputs: "), line
    assert not out.exists() and list(tmp_path.glob("*clip.wav*")) == []
    assert time.monotonic() - started < 30  # no minute of retries


def test_record_without_any_microphone_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}  # no ~/.asoundrc: only the machine's own sound cards
    inputs = subprocess.run([*EDGE_AGENT, "devices", "--json"], env=env, capture_output=True, text=True, timeout=60)
    if json.loads(inputs.stdout)["audio_inputs"]:
        pytest.skip("this machine has an audio input")
    out = tmp_path / "audio.wav"
    done = subprocess.run(
        [*EDGE_AGENT, "devices", "--record", "-o", str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stdout == ""
    (line,) = _errors(done.stderr)
    assert line.startswith("error: no default audio input ("), line
    assert not out.exists()


class _FakeSoundDevice:
    """sounddevice with one input whose stream opens and then stays silent, or cannot be opened at all."""

    class PortAudioError(Exception):
        pass

    def __init__(self, opens: bool) -> None:
        self.opens = opens

    def query_devices(self, device: int | None = None, kind: str | None = None) -> Any:
        mic = {"index": 0, "name": "Silent Mic", "max_input_channels": 1, "default_samplerate": 48000.0}
        return mic if kind == "input" else [mic]

    def InputStream(self, **_settings: Any) -> contextlib.AbstractContextManager[None]:  # noqa: N802
        if not self.opens:
            raise self.PortAudioError("Error opening InputStream: Device unavailable [PaErrorCode -9985]")
        return contextlib.nullcontext()


@pytest.mark.parametrize(
    ("opens", "words"),
    [
        (True, "error: 'Silent Mic': no audio for 0.2 s (device gone or in use?)"),
        (False, "error: 'Silent Mic': cannot record 48000 Hz x 1 ch (Error opening InputStream: Device unavailable"),
    ],
)
def test_record_from_a_device_that_delivers_nothing_fails_and_keeps_the_old_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    opens: bool,
    words: str,
) -> None:
    monkeypatch.setattr(devices_command, "import_sounddevice", lambda: _FakeSoundDevice(opens))
    monkeypatch.setattr(devices_command, "NO_AUDIO_S", 0.2)
    out = tmp_path / "audio.wav"
    out.write_bytes(b"an earlier recording")
    assert cli.main(["devices", "--record", "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().startswith(words), captured.err
    assert out.read_bytes() == b"an earlier recording"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.wav"]
