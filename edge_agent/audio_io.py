"""Read audio files as float32 samples: whatever libsndfile decodes, or headerless signed 16-bit PCM."""

from __future__ import annotations

import importlib
import struct
from pathlib import Path
from typing import Any

import numpy as np

RAW_SUFFIXES = frozenset({".raw", ".pcm", ".s16"})
_WAVE_FORMATS = {0x0001: "PCM", 0x0003: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law", 0xFFFE: "extensible"}


class AudioFileError(ValueError):
    """An audio file that cannot be read; `reason` says why and the message also names the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_audio(path: Path, raw_rate: int, raw_channels: int = 1) -> tuple[np.ndarray, int]:
    """Samples in [-1, 1] (float32, frames x channels) and rate; `.raw/.pcm/.s16` are s16le at `raw_rate`."""
    path = Path(path)
    head = _head(path)
    if path.suffix.lower() in RAW_SUFFIXES:
        return _read_raw(path, raw_rate, raw_channels), raw_rate
    return _read_with_soundfile(path, head)


def _head(path: Path) -> bytes:
    """The first 4 KiB of a regular, non-empty file."""
    if not path.exists():
        raise AudioFileError(path, "no such file")
    if not path.is_file():
        raise AudioFileError(path, "not a regular file")
    try:
        with path.open("rb") as file:
            head = file.read(4096)
    except OSError as exc:
        raise AudioFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    if not head:
        raise AudioFileError(path, "empty file")
    return head


def _read_raw(path: Path, rate: int, channels: int) -> np.ndarray:
    """Headerless interleaved s16le; a trailing partial frame is dropped."""
    if rate <= 0:
        raise AudioFileError(path, f"invalid raw sample rate {rate} Hz")
    if channels <= 0:
        raise AudioFileError(path, f"invalid raw channel count {channels}")
    data = path.read_bytes()
    if len(data) % 2:
        raise AudioFileError(path, f"{len(data)} bytes is not a whole number of 16-bit samples (headerless s16le)")
    ints = np.frombuffer(data, dtype="<i2")
    frames = len(ints) // channels
    return ints[: frames * channels].reshape(frames, channels).astype(np.float32) / 32768.0


def _read_with_soundfile(path: Path, head: bytes) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (imported here: it is a shared library that may be missing)."""
    try:
        soundfile: Any = importlib.import_module("soundfile")
    except (ImportError, OSError) as exc:
        raise AudioFileError(
            path, f"reading {path.suffix or 'audio'} files needs the soundfile package ({exc})"
        ) from exc
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioFileError(path, _explain(head, exc)) from exc
    return samples, int(rate)


def _explain(head: bytes, exc: Exception) -> str:
    """Why libsndfile refused a file, in one line."""
    reason = str(exc).split(": ", 1)[-1].strip() or type(exc).__name__
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        tag = _wave_format_tag(head)
        if tag is not None and tag not in _WAVE_FORMATS:
            return f"unsupported WAV sample format (format tag 0x{tag:04x}); use PCM or IEEE float"
        return f"unreadable WAV file ({reason})"
    if _looks_like_text(head):
        return "a text file, not audio"
    return f"not a readable audio file ({reason}); expected WAV, FLAC or headerless .raw/.pcm/.s16"


def _wave_format_tag(head: bytes) -> int | None:
    """The format tag of a RIFF/WAVE header's `fmt ` chunk, if it lies within `head`."""
    offset = 12
    while offset + 8 <= len(head):
        chunk, size = head[offset : offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        if chunk == b"fmt " and offset + 10 <= len(head):
            tag: int = struct.unpack_from("<H", head, offset + 8)[0]
            return tag
        offset += 8 + size + (size & 1)
    return None


def _looks_like_text(head: bytes) -> bool:
    """Whether the head decodes as printable UTF-8."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut off at the end of the head
            return False
        text = head[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n" for c in text)
