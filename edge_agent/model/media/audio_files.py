"""Load audio files (WAV, FLAC and whatever else libsndfile reads, or headerless 16-bit PCM) as 16 kHz mono."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr

from edge_agent.audio_io import RAW_SUFFIXES, AudioFileError, read_audio

SAMPLE_RATE = 16000
__all__ = ["RAW_SUFFIXES", "SAMPLE_RATE", "AudioError", "load_audio"]


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and why."""


def load_audio(path: Path, raw_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file to float32 mono at SAMPLE_RATE: channels averaged, other rates resampled with soxr.

    `.raw`, `.pcm` and `.s16` files are headerless signed 16-bit little-endian mono at `raw_rate`; any other
    file is decoded by libsndfile (WAV 8/16/24/32-bit PCM, float, mu-law, A-law; FLAC; OGG; MP3; AIFF...).
    """
    path = Path(path)
    try:
        samples, rate = read_audio(path, raw_rate)
    except AudioFileError as exc:
        raise AudioError(str(exc)) from exc
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)
