"""Weight-file pages onnxruntime no longer reads are given back; written (private) pages never are."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.graph_rewrite import Rewrites
from edge_agent.model.runtime.resident import (
    TablePages,
    mapped_files,
    release_clean_file_pages,
    released_around_loading,
)
from edge_agent.model.store.files import locate_model

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
REPO = Path(__file__).resolve().parents[2]
SIZE = 8 << 20


def resident(path: Path) -> int:
    """Resident bytes of this process's mappings of `path`."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            inside = len(fields) >= 6 and fields[5] == str(path.resolve())
        elif inside and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def weights_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    values = np.arange(SIZE // 4, dtype=np.float32)
    path = tmp_path / "w.onnx_data"
    values.tofile(path)
    return path, values


def test_clean_pages_are_dropped_and_read_back_from_the_file(tmp_path: Path) -> None:
    path, values = weights_file(tmp_path)
    mapped = np.memmap(path, dtype=np.float32, mode="c")  # private and writable, as onnxruntime maps weights
    assert float(mapped.sum()) == float(values.sum())
    assert resident(path) >= SIZE * 0.9
    released = release_clean_file_pages([path])
    assert released >= SIZE * 0.9 and resident(path) < SIZE * 0.1
    assert np.array_equal(mapped, values)  # faulted back with the file's content


def test_a_mapping_with_a_written_page_is_left_alone(tmp_path: Path) -> None:
    path, values = weights_file(tmp_path)
    mapped = np.memmap(path, dtype=np.float32, mode="c")
    mapped[5] = -1.0  # a private copy of that page: dropping it would lose the write
    assert float(mapped[1000:].sum()) == float(values[1000:].sum())
    assert release_clean_file_pages([path]) == 0
    assert mapped[5] == -1.0 and resident(path) >= SIZE * 0.9


def test_other_files_are_not_touched(tmp_path: Path) -> None:
    path, _ = weights_file(tmp_path)
    mapped = np.memmap(path, dtype=np.float32, mode="c")
    float(mapped.sum())
    assert release_clean_file_pages([tmp_path / "other.onnx_data"]) == 0
    assert resident(path) >= SIZE * 0.9


@pytest.mark.parametrize("variant", ["q4", "fp32"])
def test_the_engine_gives_the_same_logits_with_and_without_releasing(variant: str) -> None:
    files = locate_model(REPO / "models/tiny-gemma4", variant, verify=False)
    rewrites = Rewrites(int8_activations=True)  # level 4: packing reads the scales, which stay mapped
    prompt = list(range(3, 40))
    kept, _ = TextEngine(files, EngineOptions(rewrites=rewrites, release_file_pages=False), ()).forward(prompt)
    engine = TextEngine(files, EngineOptions(rewrites=rewrites), ())
    assert sum(resident(p) for p in files.decoder.sidecars) == 0 or variant == "fp32"
    released, _ = engine.forward(prompt)
    assert np.array_equal(kept, released)


def test_a_cached_tensor_loaded_as_a_read_only_memmap_is_released(tmp_path: Path) -> None:
    # the graph cache hands a quantized head to onnxruntime as np.load(..., mmap_mode="r") arrays
    values = np.arange(SIZE // 4, dtype=np.float32)
    np.save(tmp_path / "t0.npy", values)
    cached = np.load(tmp_path / "t0.npy", mmap_mode="r")
    assert mapped_files([cached, values]) == [tmp_path / "t0.npy"]
    assert float(cached.sum()) == float(values.sum())
    assert resident(tmp_path / "t0.npy") >= SIZE * 0.9
    assert release_clean_file_pages(mapped_files([cached])) >= SIZE * 0.9
    assert resident(tmp_path / "t0.npy") < SIZE * 0.1 and np.array_equal(cached, values)


def test_pages_read_while_loading_are_paged_out_and_nothing_is_lost(tmp_path: Path) -> None:
    path, values = weights_file(tmp_path)
    mapped = np.memmap(path, dtype=np.float32, mode="c")
    mapped[5] = -1.0  # a written page must survive paging out (swapped or kept, never dropped)
    with released_around_loading([path], interval=0.02):
        assert float(mapped[1000:].sum()) == float(values[1000:].sum())  # the "load" reads every page
        deadline = time.monotonic() + 5
        while resident(path) >= SIZE * 0.5 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert resident(path) < SIZE * 0.5
    assert mapped[5] == -1.0 and np.array_equal(mapped[1000:], values[1000:])


def test_an_embedding_table_keeps_at_most_the_pages_of_its_last_rows(tmp_path: Path) -> None:
    path, values = weights_file(tmp_path)
    table = np.memmap(path, dtype=np.float32, mode="c").reshape(-1, 1024)  # 4 KiB rows
    pages = TablePages([path], every=16)
    seen = []
    for reads, row in enumerate(range(0, table.shape[0], 3), start=1):  # rows as tokens look them up
        seen.append(float(table[row].sum()))
        pages.read(1)
        if reads % 16 == 0:  # just dropped: nothing of the table is left resident
            assert resident(path) < 64 << 10
    assert seen == [float(values[r * 1024 : (r + 1) * 1024].sum()) for r in range(0, table.shape[0], 3)]
    untouched = np.memmap(path, dtype=np.float32, mode="c").reshape(-1, 1024)
    for row in range(0, table.shape[0], 3):  # the same reads without the keeper: the table stays resident
        float(untouched[row].sum())
    assert resident(path) >= SIZE * 0.5
    assert TablePages([], every=1)._madvise is None  # nothing to watch: nothing done
