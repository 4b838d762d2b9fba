"""What capture hardware this machine has: V4L2 nodes and sound cards (sysfs), audio inputs (PortAudio), udev rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.sources.audio import import_sounddevice
from edge_agent.sources.frame_sources import SourceError


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


@dataclass(frozen=True)
class UdevRule:
    """One udev rule giving a capture device a stable /dev/edge-agent/<name> symlink, with a comment line."""

    comment: str
    rule: str
    extra: tuple[str, ...] = ()  # further rule lines (the ALSA card id)

    def text(self) -> str:
        """The comment and the rule line(s), as they go into a .rules file."""
        return "\n".join((f"# {self.comment}", self.rule, *self.extra))


def _udev_value(text: str) -> str:
    """A sysfs value made safe between udev's double quotes (a quote, backslash or control char becomes `?`)."""
    return "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text.strip())


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _usb_match(device_link: Path, sys_root: Path) -> tuple[list[str], str]:
    """udev match keys for the USB device above a class device's `device` link, and a description of it."""
    if not device_link.exists():
        return [], "no parent device"
    start = device_link.resolve()
    top = sys_root.resolve()
    for parent in (start, *start.parents):
        if parent == top or top not in parent.parents:
            break
        vendor, product = _read(parent / "idVendor"), _read(parent / "idProduct")
        if vendor and product:
            keys = [f'ATTRS{{idVendor}}=="{_udev_value(vendor)}"', f'ATTRS{{idProduct}}=="{_udev_value(product)}"']
            serial = _read(parent / "serial")
            # Without a serial, two identical devices differ only by USB port: match the port path too.
            keys.append(f'ATTRS{{serial}}=="{_udev_value(serial)}"' if serial else f'KERNELS=="{parent.name}"')
            label = " ".join(x for x in (_read(parent / "manufacturer"), _read(parent / "product")) if x)
            return keys, f"USB {vendor}:{product}" + (f" {label}" if label else "") + ("" if serial else " (no serial)")
    return [f'KERNELS=="{start.name}"'], f"not USB: matched by bus path {start.name}"


def camera_udev_rule(device: str, name: str = "cam0", sys_root: Path = Path("/sys")) -> UdevRule:
    """The rule for a V4L2 node (/dev/videoN, videoN, N or a symlink to one) from its sysfs attributes."""
    node = Path(device).resolve().name if device.startswith("/") else device
    node = f"video{node}" if node.isdigit() else node
    entry = sys_root / "class" / "video4linux" / node
    if not re.fullmatch(r"video\d+", node) or not entry.is_dir():
        raise SourceError(f"{device}: no such V4L2 device (nothing at {entry})")
    keys, about = _usb_match(entry / "device", sys_root)
    index = _read(entry / "index")
    if index is not None:  # a UVC camera has a capture node (index 0) and a metadata node
        keys.append(f'ATTR{{index}}=="{_udev_value(index)}"')
    rule = ", ".join(
        ['SUBSYSTEM=="video4linux"', *keys, f'SYMLINK+="edge-agent/{name}"', 'GROUP="video"', 'MODE="0660"']
    )
    return UdevRule(f"{name}: /dev/{node} ({_read(entry / 'name') or '?'}; {about})", rule)


def _sound_card(device: str, sound: Path) -> tuple[int, str | None]:
    """Card number (and a chosen PCM node) from /dev/snd/..., hw:N[,M], cardN, N or a card id."""
    text = Path(device).resolve().name if device.startswith("/") else device
    if match := re.fullmatch(r"pcmC(\d+)D(\d+)[cp]", text):
        return int(match.group(1)), text
    if match := re.fullmatch(r"(?:controlC|card)(\d+)", text):
        return int(match.group(1)), None
    if match := re.fullmatch(r"(?:plug)?hw:(?:CARD=)?([^,]+)(?:,(?:DEV=)?(\d+))?", text):
        text, pcm = match.group(1), match.group(2)
        if not text.isdigit():
            text = str(_sound_card(text, sound)[0])
        return int(text), (f"pcmC{text}D{pcm}c" if pcm is not None else None)
    if text.isdigit():
        return int(text), None
    for card in sorted(sound.glob("card*")):
        if _read(card / "id") == text and card.name[4:].isdigit():
            return int(card.name[4:]), None
    raise SourceError(f"{device}: no such ALSA card (looked in {sound})")


def sound_udev_rule(device: str, name: str = "mic0", sys_root: Path = Path("/sys")) -> UdevRule:
    """The rule for an ALSA capture PCM (a /dev/snd node, hw:N[,M], a card number or id) from sysfs."""
    sound = sys_root / "class" / "sound"
    number, pcm = _sound_card(device, sound)
    card = sound / f"card{number}"
    if not card.is_dir():
        raise SourceError(f"{device}: no such ALSA card (nothing at {card})")
    captures = sorted(p.name for p in sound.glob(f"pcmC{number}D*c"))
    pcm = pcm or (captures[0] if captures else None)
    if pcm is None or pcm not in captures:
        raise SourceError(f"{device}: card {number} has no capture device{f' {pcm}' if pcm else ''}")
    keys, about = _usb_match(card / "device", sys_root)
    tail = ['GROUP="audio"', 'MODE="0660"']
    rule = ", ".join(['SUBSYSTEM=="sound"', f'KERNEL=="pcmC*D{pcm.split("D")[1]}"', *keys])
    card_id = re.sub(r"[^A-Za-z0-9]", "", name)[:15] or "edgeagent"
    # The card id names it for ALSA and PortAudio (hw:CARD=<id>) whatever number the kernel gives it.
    extra = ", ".join(['SUBSYSTEM=="sound"', 'KERNEL=="card*"', *keys, f'ATTR{{id}}="{card_id}"'])
    label = f"{name}: /dev/snd/{pcm} (card {number} {_read(card / 'id') or '?'}; {about})"
    return UdevRule(label, ", ".join([rule, f'SYMLINK+="edge-agent/{name}"', *tail]), (extra,))


def all_udev_rules(sys_root: Path = Path("/sys")) -> list[UdevRule]:
    """Rules for every USB camera (capture node) and every USB sound card with a capture PCM, numbered in order."""
    rules: list[UdevRule] = []
    videos = sorted((sys_root / "class" / "video4linux").glob("video*"), key=lambda p: int(p.name[5:] or 0))
    for entry in videos:
        rule = camera_udev_rule(entry.name, f"cam{len(rules)}", sys_root)
        if "ATTRS{idVendor}" in rule.rule and _read(entry / "index") in (None, "0"):
            rules.append(rule)
    cameras = len(rules)
    for card in sorted((sys_root / "class" / "sound").glob("card*")):
        if not any((sys_root / "class" / "sound").glob(f"pcmC{card.name[4:]}D*c")):
            continue
        rule = sound_udev_rule(card.name, f"mic{len(rules) - cameras}", sys_root)
        if "ATTRS{idVendor}" in rule.rule:
            rules.append(rule)
    return rules
