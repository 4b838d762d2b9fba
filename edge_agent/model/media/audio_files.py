"""Read audio files (WAV, FLAC and whatever else libsndfile reads, or headerless 16-bit PCM) as 16 kHz mono."""

from __future__ import annotations

import importlib
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soxr

SAMPLE_RATE = 16000
RAW_SUFFIXES = frozenset({".raw", ".pcm", ".s16"})
_WAVE_FORMATS = {0x0001: "PCM", 0x0003: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law", 0xFFFE: "extensible"}


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and why."""


def load_audio(path: Path, raw_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file to float32 mono at SAMPLE_RATE: channels averaged, other rates resampled with soxr.

    `.raw`, `.pcm` and `.s16` files are headerless signed 16-bit little-endian mono at `raw_rate`; any other
    file is decoded by libsndfile (WAV 8/16/24/32-bit PCM, float, mu-law, A-law; FLAC; OGG; MP3; AIFF...).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    head = _head(path)
    if not head:
        raise AudioError(f"{path}: empty file")
    if path.suffix.lower() in RAW_SUFFIXES:
        samples, rate = _read_raw(path, raw_rate), raw_rate
    else:
        samples, rate = _read_with_soundfile(path, head)
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(4096)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _read_raw(path: Path, rate: int) -> np.ndarray:
    if rate <= 0:
        raise AudioError(f"{path}: invalid raw sample rate {rate} Hz")
    data = path.read_bytes()
    if len(data) % 2:
        raise AudioError(f"{path}: {len(data)} bytes is not a whole number of 16-bit samples (headerless s16le)")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0)[:, None]


def _read_with_soundfile(path: Path, head: bytes) -> tuple[np.ndarray, int]:
    try:
        soundfile: Any = importlib.import_module("soundfile")
    except (ImportError, OSError) as exc:
        raise AudioError(f"{path}: reading {path.suffix or 'audio'} files needs the soundfile package ({exc})") from exc
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"{path}: {_explain(head, exc)}") from exc
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
    offset = 12
    while offset + 8 <= len(head):
        chunk, size = head[offset : offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        if chunk == b"fmt " and offset + 10 <= len(head):
            tag: int = struct.unpack_from("<H", head, offset + 8)[0]
            return tag
        offset += 8 + size + (size & 1)
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut off at the end of the head
            return False
        text = head[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n" for c in text)
