"""Images and recordings sent as bytes (over MQTT, by a program): checked before they are decoded, then decoded.

Only JPEG/PNG images and WAV/FLAC recordings are accepted, and their headers are read first, so that a small file
cannot make the node decode a huge picture or hours of audio.
"""

from __future__ import annotations

import importlib
import io
import warnings
from typing import Any

import cv2
import numpy as np
import soxr
from PIL import Image

from edge_agent.model.media.audio_files import SAMPLE_RATE, AudioError
from edge_agent.model.media.vision import ImageError

MAX_IMAGE_PIXELS = 40_000_000  # width x height of the largest picture decoded (a 12 MP phone photo is 12,000,000)
MAX_SAMPLES_PER_S = 192_000  # sample rate x channels of the densest recording decoded (48 kHz stereo is 96,000)


def image_kind(data: bytes) -> str | None:
    """'JPEG' or 'PNG' from the first bytes, else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    return None


def image_from_bytes(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A JPEG/PNG file's bytes as a BGR uint8 frame; ImageError (one line) when it is not one or is too large."""
    kind = image_kind(data)
    if kind is None:
        raise ImageError("image: not a JPEG or PNG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:  # reads the header only
                width, height = header.size
    except Exception as exc:  # Pillow raises many kinds for a broken header
        raise ImageError(f"image: an unreadable {kind} ({type(exc).__name__}: {str(exc)[:120]})") from None
    if width * height > max_pixels:
        raise ImageError(f"image: {width}x{height} pixels is too large (at most {max_pixels:,} pixels)")
    try:
        frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        frame = None
    if frame is None:
        raise ImageError(f"image: an unreadable {kind} (corrupt or truncated)")
    image: np.ndarray = frame
    return image


def audio_kind(data: bytes) -> str | None:
    """'WAV' or 'FLAC' from the first bytes, else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "WAV"
    if data[:4] == b"fLaC":
        return "FLAC"
    return None


def audio_from_bytes(data: bytes, max_s: float) -> np.ndarray:
    """A WAV/FLAC file's bytes as float32 mono at 16 kHz; AudioError (one line) when it is not one, is longer than
    `max_s` seconds or denser than MAX_SAMPLES_PER_S."""
    kind = audio_kind(data)
    if kind is None:
        raise AudioError("audio: not a WAV or FLAC recording")
    soundfile: Any = importlib.import_module("soundfile")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as file:
            rate, channels, frames = int(file.samplerate), int(file.channels), int(file.frames)
            if rate <= 0 or channels <= 0 or rate * channels > MAX_SAMPLES_PER_S:
                raise AudioError(
                    f"audio: {channels} channel(s) at {rate} Hz is not supported (rate x channels at most "
                    f"{MAX_SAMPLES_PER_S:,})"
                )
            if frames / rate > max_s:
                raise AudioError(f"audio: {frames / rate:.1f} s is too long (at most {max_s:g} s)")
            samples = file.read(frames=int(max_s * rate) + 1, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, AudioError):
            raise
        raise AudioError(f"audio: an unreadable {kind} ({str(exc)[:120]})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"audio: the {kind} holds no samples")
    if samples.shape[0] > max_s * rate:  # a header that understated the length
        raise AudioError(f"audio: longer than {max_s:g} s")
    mono = samples.mean(axis=1, dtype=np.float32) if channels > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)
