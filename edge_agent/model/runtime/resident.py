"""Give back the resident pages of a graph's weight files that onnxruntime read while loading and no longer needs.

onnxruntime maps external-data files privately (one mapping per tensor). At accuracy level 4 on x86 its INT4
packing reads every MatMulNBits scale tensor and keeps its own float32 copy, yet the file's scales stay mapped (the
kernel reports them not packed): at E2B shape 232 MB of file pages stay resident and are never read again
(measured: after they are dropped, prefill and decode do not fault them back). A mapping that holds no private
(written) page holds only clean page-cache pages, so dropping them loses nothing: a later read faults them back
from the file. The same holds for a cached quantized lm_head (memory-mapped .npy files): onnxruntime packs it at
load and reads its own copy. Linux only; elsewhere nothing is done.

While a session loads, the same pages would pile up until the end (a transient of ~180 MB at E2B shape): a
thread pages them out every few tenths of a second with MADV_PAGEOUT, which never loses data (a written private
page is swapped or kept, never dropped), so it is safe while onnxruntime is still reading and writing. The price:
those pages leave the page cache, so the next load reads them from disk again (237 MB at E2B shape, the scales).
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

_MADV_DONTNEED = 4
_MADV_PAGEOUT = 21  # Linux 5.4+: reclaim the range's pages (clean file pages dropped, written ones swapped)
_SMAPS = Path("/proc/self/smaps")


def arena_returning_run() -> ort.RunOptions:
    """Run options that hand the CPU arena's free memory back at the end of the run. For runs over many positions
    (prefill, encoders), whose activations the arena would otherwise hold for good: at E2B shape a 1,024-token
    prompt left 225 MB more resident without them, and peak RSS was 123 MiB higher over the next decode."""
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


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


def _madvise() -> Callable[[int, int, int], int] | None:
    """libc's madvise, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise


def _file_mappings(files: Iterable[Path]) -> list[tuple[int, int, int, int]]:
    """(start, end, resident, private-anonymous bytes) of this process's mappings of `files` (none off Linux)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        smaps = _SMAPS.read_text()
    except OSError:
        return []
    return _mappings({str(Path(f).resolve()) for f in files}, smaps)


def clean_ranges(files: Iterable[Path]) -> list[tuple[int, int]]:
    """The address ranges of this process's mappings of `files` that hold no written page."""
    return [(start, end) for start, end, _, anonymous in _file_mappings(files) if not anonymous]


def release_clean_file_pages(files: Iterable[Path]) -> int:
    """Drop the resident pages of this process's mappings of `files` that hold no written page; bytes dropped."""
    madvise = _madvise()
    if madvise is None:
        return 0
    released = 0
    for start, end, resident, anonymous in _file_mappings(files):
        if resident and not anonymous and madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += resident
    if released:
        log.debug("released %.0f MiB of weight-file pages onnxruntime no longer reads", released / 2**20)
    return released


@contextmanager
def released_around_loading(files: Iterable[Path], enabled: bool = True, interval: float = 0.25) -> Iterator[None]:
    """Within the block (a session loading the graph whose weight `files` these are) page their mapped pages out
    as they are read, so they do not add up; after it, drop the clean ones left. The block's thread is not held
    up (onnxruntime releases the GIL while it loads)."""
    madvise, files = _madvise() if enabled else None, list(files)
    if madvise is None:
        yield
        return
    done = threading.Event()

    def run() -> None:
        while not done.wait(interval):
            for start, end, resident, _ in _file_mappings(files):
                if resident:
                    madvise(start, end - start, _MADV_PAGEOUT)

    thread = threading.Thread(target=run, name="weight-pages", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    release_clean_file_pages(files)


class TablePages:
    """Keeps an embedding table's file pages from piling up: every token maps its rows' pages (with the kernel's
    fault-around, ~170 KB a token at E2B shape), which would stay resident for good. After every `every` rows
    read, the table's mappings are dropped; they are found (and checked to hold no written page: onnxruntime only
    reads its initializers) once, as reading /proc/self/smaps takes tens of milliseconds."""

    def __init__(self, files: Iterable[Path], every: int = 64) -> None:
        self.files, self.every, self._read = list(files), every, 0
        self._ranges: list[tuple[int, int]] | None = None
        self._madvise = _madvise() if self.files else None

    def read(self, rows: int) -> None:
        """Count `rows` rows read; drop the table's resident pages when enough have been."""
        self._read += rows
        if self._madvise is None or self._read < self.every:
            return
        self._read = 0
        if self._ranges is None:
            self._ranges = clean_ranges(self.files)
        for start, end in self._ranges:
            self._madvise(start, end - start, _MADV_DONTNEED)
