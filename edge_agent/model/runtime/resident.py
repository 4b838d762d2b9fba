"""Give back the resident pages of a graph's weight files that onnxruntime read while loading and no longer needs.

onnxruntime maps external-data files privately (one mapping per tensor). At accuracy level 4 on x86 its INT4
packing reads every MatMulNBits scale tensor and keeps its own float32 copy, yet the file's scales stay mapped (the
kernel reports them not packed): at E2B shape 232 MB of file pages stay resident and are never read again
(measured: after they are dropped, prefill and decode do not fault them back). A mapping that holds no private
(written) page holds only clean page-cache pages, so dropping them loses nothing: a later read faults them back
from the file. The same holds for a cached quantized lm_head (memory-mapped .npy files): onnxruntime packs it at
load and reads its own copy. Linux only; elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_MADV_DONTNEED = 4
_SMAPS = Path("/proc/self/smaps")


def _mappings(paths: set[str], smaps: str) -> list[tuple[int, int, int, int]]:
    """(start, end, resident bytes, private-anonymous bytes) of every mapping of one of `paths`."""
    found: list[tuple[int, int, int, int]] = []
    current: list[int] | None = None
    for line in smaps.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            current = None
            if len(fields) >= 6 and " ".join(fields[5:]) in paths:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                current = [start, end, 0, 0]
                found.append(current)  # type: ignore[arg-type]
        elif current is not None and fields[0] in ("Rss:", "Anonymous:"):
            current[2 if fields[0] == "Rss:" else 3] = int(fields[1]) * 1024
    return [(m[0], m[1], m[2], m[3]) for m in found]


def mapped_files(arrays: Iterable[np.ndarray]) -> list[Path]:
    """The files behind the memory-mapped arrays among `arrays` (a cached quantized head's tensors)."""
    return [Path(a.filename) for a in arrays if isinstance(a, np.memmap) and a.filename]


def release_clean_file_pages(files: Iterable[Path]) -> int:
    """Drop the resident pages of this process's mappings of `files` that hold no written page; bytes dropped."""
    if not sys.platform.startswith("linux"):
        return 0
    paths = {str(Path(f).resolve()) for f in files}
    try:
        smaps = _SMAPS.read_text()
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for start, end, resident, anonymous in _mappings(paths, smaps):
        if resident and not anonymous and madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += resident
    if released:
        log.debug("released %.0f MiB of weight-file pages onnxruntime no longer reads", released / 2**20)
    return released
