"""`edge-agent devices`: list cameras and audio inputs, grab a frame, record a clip, or print udev rules."""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soxr

from edge_agent.config import CameraConfig, MicrophoneConfig
from edge_agent.sources.audio import RATE, find_input_device, import_sounddevice
from edge_agent.sources.discovery import (
    UdevRule,
    all_udev_rules,
    camera_udev_rule,
    list_audio_inputs,
    list_video_nodes,
    sound_udev_rule,
)
from edge_agent.sources.frame_sources import SourceError, open_frame_source

NO_AUDIO_S = 3.0  # --record gives up when the device delivers nothing for this long


def _listing() -> dict[str, Any]:
    cameras = [node.__dict__ for node in list_video_nodes()]
    try:
        audio: list[dict[str, Any]] | str = list_audio_inputs()
    except SourceError as exc:
        audio = str(exc)
    return {"cameras": cameras, "audio_inputs": audio}


def _print_listing(listing: dict[str, Any]) -> None:
    print("Cameras (V4L2):")
    for cam in listing["cameras"]:
        aliases = f"  (also {', '.join(cam['aliases'])})" if cam["aliases"] else ""
        print(f"  {cam['device']}: {cam['name']}{aliases}")
        for fmt in cam["formats"]:
            print(f"      {fmt}")
    if not listing["cameras"]:
        print("  none found (CSI cameras on a Pi: use source 'exec:rpicam-vid -t 0 --codec mjpeg -o -')")
    print("Audio inputs:")
    if isinstance(listing["audio_inputs"], str):
        print(f"  {listing['audio_inputs']}")
    for dev in listing["audio_inputs"] if isinstance(listing["audio_inputs"], list) else []:
        print(f"  [{dev['index']}] {dev['name']}: {dev['channels']} ch, {dev['default_rate']:.0f} Hz")
    if listing["audio_inputs"] == []:
        print("  none found")


def grab_frame(source: str, out: Path, timeout_s: float = 15.0) -> tuple[int, int]:
    """Save one frame of a camera source (any `cameras[].source` form) to an image file."""
    config = CameraConfig(name="probe", source=int(source) if source.isdigit() else source)
    capture = open_frame_source(config.source)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if capture.grab():
                image = capture.retrieve()
                if not cv2.imwrite(str(out), image):
                    raise SourceError(f"cannot write {out} (use .jpg or .png)")
                return int(image.shape[1]), int(image.shape[0])
        raise SourceError(f"no frame from {source} within {timeout_s:.0f} s")
    finally:
        capture.close()


def record(device: str | None, seconds: float, out: Path, sample_rate: int) -> int:
    """Record `seconds` of 16 kHz mono from an input device into a WAV file; returns the sample count.

    One attempt, no retries: a missing device, one that cannot be opened at `sample_rate`, or one that
    delivers no audio for NO_AUDIO_S raises SourceError naming the device, and leaves no file behind."""
    wanted: str | int | None = int(device) if device and device.isdigit() else device
    config = MicrophoneConfig(device=wanted, sample_rate=sample_rate)
    sd = import_sounddevice()
    index = find_input_device(sd, config.device)  # SourceError listing the inputs there are
    try:
        info = sd.query_devices(index, kind="input") if index is not None else sd.query_devices(kind="input")
    except sd.PortAudioError as exc:
        what = f"input device {index}" if index is not None else "no default audio input"
        raise SourceError(f"{what} ({exc}); `edge-agent devices` lists the audio inputs") from None
    name = f"{info['name']!r}"
    blocks: queue.Queue[np.ndarray] = queue.Queue()
    wanted_frames = round(seconds * sample_rate)
    collected: list[np.ndarray] = []
    frames = 0

    def callback(indata: np.ndarray, _frames: int, _time: Any, _status: Any) -> None:
        blocks.put(indata.copy())

    try:
        with sd.InputStream(
            device=info["index"],
            samplerate=sample_rate,
            channels=config.channels,
            dtype="int16",
            blocksize=256,
            callback=callback,
        ):
            while frames < wanted_frames:
                try:
                    block = blocks.get(timeout=NO_AUDIO_S)
                except queue.Empty:
                    raise SourceError(f"{name}: no audio for {NO_AUDIO_S:g} s (device gone or in use?)") from None
                collected.append(block)
                frames += len(block)
    except sd.PortAudioError as exc:
        raise SourceError(
            f"{name}: cannot record {sample_rate} Hz x {config.channels} ch ({exc}); try --rate 16000 or 44100"
        ) from None
    samples = _to_16k_mono(collected, sample_rate)[: round(seconds * RATE)]
    if len(samples) == 0:
        raise SourceError(f"{name}: delivered no audio")
    import soundfile  # type: ignore[import-untyped]  # here: libsndfile is only needed to record

    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
    partial = out.with_name(f".{out.name}.partial")
    try:
        soundfile.write(str(partial), pcm, RATE, subtype="PCM_16", format="WAV")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return len(samples)


def _to_16k_mono(blocks: list[np.ndarray], rate: int) -> np.ndarray:
    """int16 blocks (frames x channels) as one 16 kHz mono float array in [-1, 1]."""
    if not blocks:
        return np.zeros(0, np.float32)
    mono = np.concatenate(blocks).astype(np.float32).mean(axis=1) / 32768.0
    return mono if rate == RATE else np.asarray(soxr.resample(mono, rate, RATE), np.float32)


def udev_rules(device: str | None, name: str | None = None, sys_root: Path = Path("/sys")) -> list[UdevRule]:
    """Rules for one device (a V4L2 node, or else an ALSA card or PCM), or for every USB camera and capture card."""
    if device is None:
        rules = all_udev_rules(sys_root)
        if not rules:
            raise SourceError(f"no USB camera or USB capture card under {sys_root}")
        return rules
    text = Path(device).resolve().name if device.startswith("/") else device
    if text.startswith("video") or (device.startswith("/") and not text.startswith(("pcm", "control"))):
        return [camera_udev_rule(device, name or "cam0", sys_root)]
    return [sound_udev_rule(device, name or "mic0", sys_root)]


def devices(args: argparse.Namespace) -> int:
    """List devices, or run one of the checks."""
    try:
        if args.udev is not None:
            rules = udev_rules(args.udev or None, args.name)
            print("# edge-agent: stable device names; install as /etc/udev/rules.d/99-edge-agent.rules, then")
            print("# `udevadm control --reload && udevadm trigger`")
            print("\n".join(rule.text() for rule in rules))
            return 0
        if args.grab:
            width, height = grab_frame(args.grab, args.output or Path("frame.jpg"))
            print(f"saved a {width}x{height} frame from {args.grab} to {args.output or 'frame.jpg'}")
            return 0
        if args.record is not None:
            out = args.output or Path("audio.wav")
            count = record(args.record or None, args.seconds, out, args.rate)
            print(f"saved {count / RATE:.1f} s of 16 kHz audio to {out}")
            return 0
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    listing = _listing()
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        _print_listing(listing)
    return 0


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `devices` verb."""
    parser = verbs.add_parser("devices", help="list cameras and audio inputs; grab a frame or record a clip")
    parser.add_argument("--json", action="store_true", help="print the listing as JSON")
    parser.add_argument("--grab", metavar="SOURCE", help="save one frame from a camera source (index, path, URL)")
    parser.add_argument(
        "--record", metavar="DEVICE", nargs="?", const="", help="record audio (default device when none is given)"
    )
    parser.add_argument(
        "--udev",
        metavar="DEVICE",
        nargs="?",
        const="",
        help="print udev rules with stable /dev/edge-agent/ names for a camera (/dev/videoN) or ALSA card "
        "(/dev/snd/..., hw:N, card id); every USB camera and capture card when none is given",
    )
    parser.add_argument("--name", help="symlink name for --udev DEVICE (default cam0 or mic0)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of --record (default 2)")
    parser.add_argument("--rate", type=int, default=48000, help="capture rate of --record (default 48000)")
    parser.add_argument("-o", "--output", type=Path, help="file for --grab (frame.jpg) or --record (audio.wav)")
    parser.set_defaults(handler=devices)
