"""`edge-agent devices`: listing from sysfs, grabbing a frame, recording a clip through ALSA."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import cv2
import numpy as np
from rig.camera import MjpegServer
from rig.speech import to_int16

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
