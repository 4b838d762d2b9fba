"""Checks of the configured inputs: each camera gives a frame, the microphone exists and takes the settings."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from edge_agent.config import CameraConfig, MicrophoneConfig
from edge_agent.doctor.check import Check, fail, ok, warn
from edge_agent.sources.discovery import list_video_nodes
from edge_agent.sources.frame_sources import SourceError, open_frame_source


def _device_path(source: str | int) -> Path | None:
    """The V4L2 device node a source names, or None for files, streams and commands."""
    if isinstance(source, int):
        return Path(f"/dev/video{source}")
    return Path(source) if source.startswith("/dev/") else None


def _v4l2_listing(device: Path | None = None) -> str:
    nodes = list_video_nodes(with_formats=False)
    if device is not None:
        for node in nodes:
            if Path(node.device).resolve() == device.resolve():
                return node.name
    return ", ".join(f"{node.device} ({node.name})" for node in nodes) or "none"


def first_frame(camera: CameraConfig, timeout_s: float) -> tuple[int, int]:
    """Open the camera's source and read one frame; returns its width and height or raises SourceError."""
    capture = open_frame_source(camera.source, camera.width, camera.height)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if capture.grab():
                image = capture.retrieve()
                return int(image.shape[1]), int(image.shape[0])
            time.sleep(0.05)
        raise SourceError(f"no frame within {timeout_s:g} s")
    finally:
        capture.close()


def _first_frame_or_timeout(camera: CameraConfig, timeout_s: float) -> tuple[int, int] | str:
    """Like `first_frame`, in a thread so that a source hanging in its open cannot hang the doctor."""
    outcome: list[tuple[int, int] | str] = []

    def attempt() -> None:
        try:
            outcome.append(first_frame(camera, timeout_s))
        except (SourceError, OSError) as exc:
            outcome.append(str(exc))
        except Exception as exc:  # OpenCV raises cv2.error for some broken sources
            outcome.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=attempt, name=f"doctor-camera-{camera.name}", daemon=True)
    thread.start()
    thread.join(timeout_s + 5)
    return outcome[0] if outcome else f"no answer within {timeout_s + 5:g} s"


def check_camera(camera: CameraConfig, timeout_s: float = 10.0) -> Check:
    """The camera's source exists and delivers a frame."""
    name = f"camera {camera.name}"
    device = _device_path(camera.source)
    if device is not None and not device.exists():
        return fail(name, f"{device}: no such device (unplugged?); V4L2 devices here: {_v4l2_listing()}")
    result = _first_frame_or_timeout(camera, timeout_s)
    label = f"{camera.source}" + (f" ({_v4l2_listing(device)})" if device is not None else "")
    if isinstance(result, str):
        busy = "; in use by another program (the running daemon?)" if device is not None else ""
        return fail(name, f"{label}: {result}{busy}")
    width, height = result
    return ok(name, f"{label}: {width}x{height} frame")


def check_microphone(microphone: MicrophoneConfig | None) -> Check:
    """The configured input device (or file) exists and accepts the configured rate and channels."""
    if microphone is None:
        return ok("microphone", "none configured")
    if microphone.file is not None:
        if not microphone.file.is_file() or not os.access(microphone.file, os.R_OK):
            return fail("microphone", f"{microphone.file}: not a readable file")
        return ok("microphone", f"file {microphone.file}")
    from edge_agent.sources.audio import find_input_device, import_sounddevice

    try:
        sd = import_sounddevice()
        index = find_input_device(sd, microphone.device)
    except SourceError as exc:
        return fail("microphone", str(exc))
    try:
        device = sd.query_devices(index, kind="input") if index is not None else sd.query_devices(kind="input")
    except Exception as exc:  # sounddevice.PortAudioError: e.g. no default input device
        what = f"cannot query input device {index}" if index is not None else "no default input device"
        return fail("microphone", f"{what} ({exc})")
    described = f"{device['name']} ({device['max_input_channels']} ch, {device['default_samplerate']:.0f} Hz)"
    try:
        sd.check_input_settings(
            device=device["index"], channels=microphone.channels, dtype="int16", samplerate=microphone.sample_rate
        )
    except Exception as exc:  # sounddevice.PortAudioError / ValueError
        return fail(
            "microphone",
            f"{described}: does not take {microphone.sample_rate} Hz x {microphone.channels} ch ({exc})",
        )
    return ok("microphone", described)


def check_video_devices(sys_root: Path = Path("/sys/class/video4linux"), dev_root: Path = Path("/dev")) -> list[Check]:
    """A node without a config: every V4L2 device (/dev/video*) and whether this user may open it."""
    nodes = {node.device: node.name for node in list_video_nodes(sys_root, dev_root, with_formats=False)}
    for path in sorted(dev_root.glob("video*")):  # nodes sysfs does not list (a container's /dev)
        nodes.setdefault(str(path), "?")
    if not nodes:
        return [
            warn(
                "cameras",
                f"no V4L2 device ({dev_root}/video*): plug in a USB camera, or use a network (rtsp://, http://) "
                "or exec: source (a CSI camera on a Pi: 'exec:rpicam-vid -t 0 --codec mjpeg -o -')",
            )
        ]
    listed = ", ".join(f"{device} ({name})" for device, name in nodes.items())
    closed = [device for device in nodes if not os.access(device, os.R_OK | os.W_OK)]
    if closed:
        return [
            warn(
                "cameras",
                f"{listed}; this user cannot open {', '.join(closed)} (the service user is in group video; "
                "for yourself: sudo usermod -aG video $USER, then log in again)",
            )
        ]
    return [ok("cameras", f"{listed}; see `edge-agent devices` for their formats")]


def check_audio_inputs() -> list[Check]:
    """A node without a config: the audio inputs PortAudio sees."""
    from edge_agent.sources.discovery import list_audio_inputs

    try:
        inputs = list_audio_inputs()
    except SourceError as exc:
        return [fail("audio inputs", str(exc))]
    if not inputs:
        return [warn("audio inputs", "no audio input found (no microphone, or this user is not in group audio)")]
    listed = ", ".join(f"[{dev['index']}] {dev['name']} ({dev['channels']} ch)" for dev in inputs)
    return [ok("audio inputs", listed)]
