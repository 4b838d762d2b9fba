"""Spoken test audio made with espeak-ng, placed into silence or noise with known bounds."""

from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from rig.binaries import require

RATE = 16000


def speak(text: str, workdir: Path) -> np.ndarray:
    """`text` spoken by espeak-ng as 16 kHz mono float32, trimmed to the voiced part."""
    out = workdir / f"speech_{abs(hash(text))}.wav"
    subprocess.run([str(require("espeak-ng")), "-w", str(out), text], check=True, capture_output=True)
    with wave.open(str(out), "rb") as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768
    samples = soxr.resample(samples, rate, RATE).astype(np.float32)
    voiced = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[voiced[0] : voiced[-1] + 1]


@dataclass(frozen=True)
class Scene:
    """Audio with speech at known places."""

    samples: np.ndarray
    truth: list[tuple[float, float]]  # (start_s, end_s) of each spoken sentence


def compose(parts: list[np.ndarray | float], noise_db: float, seed: int = 0) -> Scene:
    """Speech arrays and gaps (seconds) in sequence, with white noise at `noise_db` dBFS under all of it."""
    pieces, truth, position = [], [], 0
    for part in parts:
        if isinstance(part, float):
            piece = np.zeros(int(part * RATE), np.float32)
        else:
            piece = part
            truth.append((position / RATE, (position + len(part)) / RATE))
        pieces.append(piece)
        position += len(piece)
    audio = np.concatenate(pieces)
    noise = np.random.default_rng(seed).normal(0, 10 ** (noise_db / 20), len(audio)).astype(np.float32)
    return Scene(np.clip(audio + noise, -1, 1), truth)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16."""
    return np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
