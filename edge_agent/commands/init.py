"""`edge-agent init`: write a commented config for this machine: the cameras and microphone it finds, the model
pulled into the models directory, the broker, and an example watch task to uncomment."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.commands.models import models_dir
from edge_agent.model.store.catalog import CATALOG
from edge_agent.model.store.files import VARIANT_SUFFIXES, ModelFilesError, locate_model
from edge_agent.model.store.manifest import list_models

EXIT_FAILED = 1
DEFAULT_BROKER = "localhost:1883"


@dataclass(frozen=True)
class FoundCamera:
    """A capture node: where to open it (a stable udev name when there is one) and what it is."""

    source: str
    about: str
    formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoundMicrophone:
    """A PortAudio input."""

    name: str
    rate: int
    channels: int


@dataclass(frozen=True)
class Machine:
    """What init found."""

    cameras: list[FoundCamera] = field(default_factory=list)
    microphones: list[FoundMicrophone] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be looked at, and why


def _stable(device: str, aliases: tuple[str, ...]) -> str:
    """Our own udev name, else the by-id one (survives replugging), else /dev/videoN."""
    for prefix in ("/dev/edge-agent/", "/dev/v4l/by-id/", "/dev/v4l/by-path/"):
        if chosen := [alias for alias in aliases if alias.startswith(prefix)]:
            return chosen[0]
    return device


def find_cameras(notes: list[str]) -> list[FoundCamera]:
    """V4L2 capture nodes (a UVC camera's metadata node lists no formats and is left out when v4l2-ctl runs)."""
    from edge_agent.sources.discovery import list_video_nodes

    nodes = list_video_nodes()
    if any(node.formats for node in nodes):
        nodes = [node for node in nodes if node.formats]
    elif nodes:
        notes.append("v4l2-ctl is not installed: every /dev/video* node is listed; delete those that are not cameras")
    about = [" ".join(f"{n.device}: {n.name}".split()) for n in nodes]  # one line: it goes into a comment
    return [FoundCamera(_stable(n.device, n.aliases), text, n.formats) for n, text in zip(nodes, about, strict=True)]


def find_microphones(notes: list[str]) -> list[FoundMicrophone]:
    """PortAudio's inputs (none, with a note, when PortAudio is missing)."""
    try:
        from edge_agent.sources.discovery import list_audio_inputs

        inputs = list_audio_inputs()
    except Exception as exc:  # PortAudio missing or failing: no microphone section, and why
        notes.append(f"audio inputs not listed: {exc}")
        return []
    return [FoundMicrophone(str(i["name"]), int(i["default_rate"]), int(i["channels"])) for i in inputs]


def find_model(directory: Path) -> Path | None:
    """A pulled model: a catalog model (E2B first), else the first other model, never a `.previous` one."""
    found = [m for m in list_models(directory) if not m.previous]
    by_name = {m.name: m.path for m in found}
    for known in CATALOG:
        if known.directory in by_name:
            return by_name[known.directory]
    return found[0].path if found else None


def model_variant(path: Path) -> str:
    """q4 when the export has it, else the first variant it has."""
    for variant in ("q4", *VARIANT_SUFFIXES):
        try:
            locate_model(path, variant, verify=False)
        except ModelFilesError:
            continue
        return variant
    return "q4"


def parse_broker(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPv6]:PORT -> (host, port)."""
    host, _, port = text.rpartition(":") if text.count(":") == 1 or text.startswith("[") else (text, "", "")
    host = host.strip("[]") or "localhost"
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"--broker {text!r}: the port must be a number from 1 to 65535")
    return host, int(port or 1883)


def _q(value: Any) -> str:
    """A YAML scalar (JSON strings are YAML double-quoted strings)."""
    return json.dumps(value)


def _cameras(cameras: list[FoundCamera]) -> list[str]:
    if not cameras:
        return [
            "cameras: []  # no camera found; e.g.:",
            "#  - name: cam0",
            '#    source: /dev/video0   # or 0, "rtsp://user:pass@192.168.1.20/stream", '
            '"exec:rpicam-vid -t 0 --codec mjpeg -o -"',
            "#    fps: 2",
        ]
    lines = ["cameras:"]
    for number, camera in enumerate(cameras):
        formats = f"; formats: {', '.join(camera.formats[:4])}" if camera.formats else ""
        lines += [f"  - name: cam{number}  # {camera.about}{formats}", f"    source: {_q(camera.source)}", "    fps: 2"]
        if number == 0:
            lines.append("    # width: 1280      # and height: what the camera should capture")
    return lines


def _microphone(microphones: list[FoundMicrophone]) -> list[str]:
    if not microphones:
        return ["# microphone:        # none found; e.g.", "#   device: USB       # part of the input's name"]
    first = microphones[0]
    lines = [
        "microphone:",
        f"  device: {_q(first.name)}  # part of the input's name is enough",
        f"  sample_rate: {first.rate}",
        "  channels: 1",
    ]
    lines += [f"  # other input: device: {_q(m.name)} (sample_rate {m.rate})" for m in microphones[1:]]
    return lines


def render_config(machine: Machine, model: Path, variant: str, broker: tuple[str, int], pulled: bool) -> str:
    """The config text: every section commented, one watch task ready to uncomment."""
    hint = "" if pulled else "  # not pulled yet: run `edge-agent models pull e2b` first"
    lines = [
        f"# edge-agent config written by `edge-agent init` on {socket.gethostname()}.",
        "# Check it with: edge-agent check-config -c THIS_FILE   (every key: edge-agent config-schema, README)",
        *(f"# note: {note}" for note in machine.notes),
        "",
        "# device:",
        "#   id: garage-pi     # default: the hostname; topics are edge_agent/<id>/...",
        "",
        "mqtt:",
        f"  host: {_q(broker[0])}",
        f"  port: {broker[1]}",
        "  # username: edge-agent",
        "  # password: ${MQTT_PASSWORD}   # from the environment, never written here",
        "",
        "model:",
        f"  path: {_q(str(model))}{hint}",
        f"  variant: {variant}",
        "  # max_context: 4096",
        "",
        *_cameras(machine.cameras),
        "",
        *_microphone(machine.microphones),
        "",
        "tasks: []",
        "# An example: uncomment these lines (and delete `tasks: []` above) to ask about a camera every 5 minutes",
        "# and on motion; the answer appears in Home Assistant as a binary sensor.",
        "# tasks:",
        "#   - kind: watch",
        "#     name: door_open",
        "#     camera: cam0",
        "#     question: Is the door open?",
        "#     answer: {type: boolean}",
        "#     interval_s: 300",
        "#     snapshot: true",
    ]
    return "\n".join(lines) + "\n"


def run_init(args: argparse.Namespace) -> int:
    """Find the hardware and the model, write the config."""
    target: Path = args.output
    if target.exists() and not args.force:
        print(f"error: {target} exists; give --force to overwrite it", file=sys.stderr)
        return EXIT_FAILED
    try:
        broker = parse_broker(args.broker)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    notes: list[str] = []
    machine = Machine(find_cameras(notes), find_microphones(notes), notes)
    directory = models_dir(args).resolve()  # absolute: the config may be written anywhere
    model = Path(args.model).resolve() if args.model else find_model(directory)
    pulled = model is not None
    if model is None:
        model = directory / CATALOG[0].directory
    variant = model_variant(model) if pulled else CATALOG[0].variant
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_config(machine, model, variant, broker, pulled), encoding="utf-8")
    cams, mics = len(machine.cameras), len(machine.microphones)
    print(f"wrote {target}: {cams} camera(s), {'a' if mics else 'no'} microphone, model {model}")
    if not pulled:
        print(f"no model in {directory} yet: run `edge-agent models pull e2b --dir {directory}`", file=sys.stderr)
    print(f"next: edge-agent check-config -c {target} && edge-agent run -c {target}")
    return 0


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `init` verb."""
    parser = verbs.add_parser("init", help="write a commented config for the cameras, microphone and model found")
    parser.add_argument(
        "-o", "-c", "--output", "--config", dest="output", type=Path, default=Path("config.yaml"),
        help="the config file to write (default ./config.yaml)",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"MQTT broker HOST[:PORT] (default {DEFAULT_BROKER})")
    parser.add_argument("--model", help="model directory (default: a model pulled into the models directory)")
    parser.add_argument("--dir", help="models directory to look in (default $EDGE_AGENT_MODELS_DIR or the system one)")
    parser.set_defaults(handler=run_init)
