"""What capture hardware this machine has: V4L2 video nodes (from sysfs) and audio inputs (PortAudio)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.sources.audio import import_sounddevice


@dataclass(frozen=True)
class VideoNode:
    """A /dev/videoN node with its driver name and, when v4l2-ctl is installed, its formats."""

    device: str
    name: str
    aliases: tuple[str, ...] = ()  # stable names (udev symlinks) that point at it
    formats: tuple[str, ...] = field(default_factory=tuple)


def _aliases(device: Path, alias_dirs: tuple[Path, ...]) -> tuple[str, ...]:
    found = []
    for directory in alias_dirs:
        if directory.is_dir():
            found += [str(p) for p in sorted(directory.iterdir()) if p.is_symlink() and p.resolve() == device.resolve()]
    return tuple(found)


def v4l2_formats(device: str) -> tuple[str, ...]:
    """Pixel formats and sizes from `v4l2-ctl --list-formats-ext` (empty when it is not installed)."""
    tool = shutil.which("v4l2-ctl")
    if tool is None:
        return ()
    try:
        out = subprocess.run(
            [tool, "-d", device, "--list-formats-ext"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    formats, current = [], ""
    for line in out.splitlines():
        text = line.strip()
        if text.startswith("[") and "'" in text:
            current = text.split("'")[1]
        elif text.startswith("Size:") and current:
            formats.append(f"{current} {text.split()[-1]}")
    return tuple(dict.fromkeys(formats))


def list_video_nodes(
    sys_root: Path = Path("/sys/class/video4linux"),
    dev_root: Path = Path("/dev"),
    alias_dirs: tuple[Path, ...] = (Path("/dev/edge-agent"), Path("/dev/v4l/by-id"), Path("/dev/v4l/by-path")),
    with_formats: bool = True,
) -> list[VideoNode]:
    """Every video4linux node the kernel lists, in number order."""
    if not sys_root.is_dir():
        return []
    nodes = []
    for entry in sorted(sys_root.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0):
        name_file = entry / "name"
        name = name_file.read_text().strip() if name_file.is_file() else "?"
        device = dev_root / entry.name
        formats = v4l2_formats(str(device)) if with_formats else ()
        nodes.append(VideoNode(str(device), name, _aliases(device, alias_dirs), formats))
    return nodes


def list_audio_inputs() -> list[dict[str, Any]]:
    """PortAudio input devices: index, name, channels and default rate."""
    sd = import_sounddevice()
    return [
        {
            "index": index,
            "name": device["name"],
            "channels": device["max_input_channels"],
            "default_rate": device["default_samplerate"],
        }
        for index, device in enumerate(sd.query_devices())
        if device["max_input_channels"] > 0
    ]
