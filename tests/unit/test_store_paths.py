"""The model store's public functions take a `str` path as well as a `Path` (issue 17)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from edge_agent.model.store.catalog import CATALOG, find
from edge_agent.model.store.geometry import read_kv_geometry, sizes_at
from edge_agent.model.store.mirror import open_source, pull
from edge_agent.model.store.progress import DOWNLOADING, TerminalProgress, human_seconds

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "models" / "tiny-gemma4"


def test_pull_and_sizes_take_str_paths(tmp_path: Path) -> None:
    source = tmp_path / "usb"
    shutil.copytree(TINY, source)
    result = pull(open_source(str(source)), str(tmp_path / "models"), "tiny")
    assert result.path == tmp_path / "models" / "tiny" and result.kept_files == 0
    assert pull(open_source(str(source)), str(tmp_path / "models"), "tiny").up_to_date
    assert sizes_at(str(result.path), "q4").files_bytes > 0
    assert read_kv_geometry(str(result.path / "config.json")).layers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_on_a_terminal_is_one_line_with_total_speed_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    progress = TerminalProgress(out, tty=True, clock=clock)
    progress.stage(DOWNLOADING, 100 << 20)
    for second in range(1, 5):
        clock.now = float(second)
        progress.advance(DOWNLOADING, "onnx/a.onnx_data", second * (10 << 20))
    progress.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 4  # one line, rewritten in place
    last = text.split("\r")[-1]
    assert "downloading 40.0 MB of 100.0 MB (40%), 10.0 MB/s, about 6s left: onnx/a.onnx_data" in last


def test_progress_without_a_terminal_is_a_few_plain_lines() -> None:
    out, clock = io.StringIO(), Clock()
    progress = TerminalProgress(out, tty=False, clock=clock)
    progress.stage(DOWNLOADING, 1000 << 20)
    for block in range(1, 1001):
        clock.now = block / 10
        progress.advance(DOWNLOADING, "big", block << 20)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in out.getvalue()
    assert lines[2].startswith("downloading 500.0 MB of 1000.0 MB (50%), 10.0 MB/s, about 50s left")
    assert lines[-1] == "downloading 1000.0 MB of 1000.0 MB (100%), 10.0 MB/s"
    assert human_seconds(3725) == "1h02m" and human_seconds(187) == "3m07s"


def test_short_names() -> None:
    assert [m.short_name for m in CATALOG] == ["e2b", "e4b"]
    e2b = find("E2B")
    assert e2b is not None and e2b.source == "hf://onnx-community/gemma-4-E2B-it-ONNX" and e2b.variant == "q4"
    assert find("gemma") is None


def test_locate_verify_and_list_take_str_paths(tmp_path: Path) -> None:
    from edge_agent.model.store.files import locate_model
    from edge_agent.model.store.manifest import list_models, read_manifest, remove_model, verify_all

    root = shutil.copytree(TINY, tmp_path / "models" / "tiny")
    assert locate_model(str(root), "q4").root == root
    assert verify_all(str(root)) == [] and read_manifest(str(root)).files
    assert [m.name for m in list_models(str(tmp_path / "models"))] == ["tiny"]
    assert remove_model(str(tmp_path / "models"), "tiny") == root and not root.exists()
