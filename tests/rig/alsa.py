"""ALSA presenting a raw PCM file as the default capture device, so sounddevice records it for real."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ASOUNDRC = """pcm.!default {{ type asym  playback.pcm "null"  capture.pcm "filein" }}
pcm.null {{ type null }}
pcm.filein {{ type file  slave.pcm "null"  file "/dev/null"  infile "{infile}"  format "raw" }}
"""


def write_raw(path: Path, samples: np.ndarray) -> Path:
    """Write int16 samples (frames x channels, or mono) as raw little-endian PCM."""
    path.write_bytes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    return path


def capture_env(home: Path, infile: Path) -> dict[str, str]:
    """Environment for a subprocess whose ALSA default capture device reads `infile`."""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".asoundrc").write_text(ASOUNDRC.format(infile=infile))
    return {**os.environ, "HOME": str(home)}
