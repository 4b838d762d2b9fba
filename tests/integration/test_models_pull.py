"""`edge-agent models pull` from a mirror on 127.0.0.1 and from a directory: resume after a cut, refusal of a
corrupted file with the model in place kept, disk check first, atomic switch keeping the previous model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.mirror import Mirror, make_older

from edge_agent.model.store.files import locate_model

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "models" / "tiny-gemma4"
BIG_FILE = "onnx/decoder_model_merged.onnx_data"  # the largest file of the tiny model (1 MB)


def models(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "models", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    root = tmp_path / "mirror" / "tiny-gemma4"
    shutil.copytree(TINY, root)
    server = Mirror(root).start()
    yield server
    server.stop()


def test_an_interrupted_pull_resumes_and_the_result_verifies_and_loads(mirror: Mirror, tmp_path: Path) -> None:
    size = (TINY / BIG_FILE).stat().st_size
    mirror.cut_once[BIG_FILE] = size // 2
    store = tmp_path / "models"
    first = models("pull", mirror.url, "--dir", str(store))
    assert first.returncode == 1 and "interrupted" in first.stderr and "resume" in first.stderr, first.stderr
    assert not (store / "tiny-gemma4").exists(), "nothing is switched in before every file is verified"
    partial = store / ".staging-tiny-gemma4" / BIG_FILE
    kept = partial.stat().st_size
    assert 0 < kept < size
    second = models("pull", mirror.url, "--dir", str(store))
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stdout
    ranges = [header for path, header in mirror.requests if path == BIG_FILE]
    assert ranges == [None, f"bytes={kept}-"]  # the second pull asked only for the rest
    assert models("verify", "tiny-gemma4", "--dir", str(store)).returncode == 0
    locate_model(store / "tiny-gemma4", "q4", verify=True)  # the daemon's own check passes too
    listed = json.loads(models("list", "--dir", str(store), "--json").stdout)
    assert [m["name"] for m in listed] == ["tiny-gemma4"]


def test_a_corrupted_file_is_refused_and_the_model_in_place_stays(mirror: Mirror, tmp_path: Path) -> None:
    store = tmp_path / "models"
    assert models("pull", mirror.url, "--dir", str(store)).returncode == 0
    before = make_older(store / "tiny-gemma4", BIG_FILE)  # the mirror now has a newer version
    good = (mirror.root / BIG_FILE).read_bytes()
    corrupted = bytearray(good)
    corrupted[len(corrupted) // 3] ^= 0xFF
    (mirror.root / BIG_FILE).write_bytes(bytes(corrupted))  # same size, different bytes
    result = models("pull", mirror.url, "--dir", str(store))
    assert result.returncode == 1 and "sha256 does not match" in result.stderr and "refused" in result.stderr
    assert (store / "tiny-gemma4" / BIG_FILE).read_bytes() == before
    assert models("verify", str(store / "tiny-gemma4")).returncode == 0
    assert not (store / "tiny-gemma4.previous").exists()
    # a good pull switches atomically and keeps the model it replaced
    (mirror.root / BIG_FILE).write_bytes(good)
    assert models("pull", mirror.url, "--dir", str(store)).returncode == 0
    assert (store / "tiny-gemma4.previous" / BIG_FILE).read_bytes() == before
    removed = models("remove", "tiny-gemma4.previous", "--dir", str(store))
    assert removed.returncode == 0 and not (store / "tiny-gemma4.previous").exists()


def test_a_model_already_in_place_is_verified_and_left_alone(mirror: Mirror, tmp_path: Path) -> None:
    store = tmp_path / "models"
    assert models("pull", mirror.url, "--dir", str(store)).returncode == 0
    stamp = (store / "tiny-gemma4" / BIG_FILE).stat().st_mtime_ns
    mirror.requests.clear()
    again = models("pull", mirror.url, "--dir", str(store))
    assert again.returncode == 0 and again.stdout.startswith("up to date"), again.stdout + again.stderr
    assert [path for path, _ in mirror.requests] == ["manifest.json"]  # nothing but the manifest downloaded
    assert (store / "tiny-gemma4" / BIG_FILE).stat().st_mtime_ns == stamp
    assert not (store / "tiny-gemma4.previous").exists()
    # a file damaged in place is not "up to date": the pull replaces the model
    damaged = bytearray((store / "tiny-gemma4" / BIG_FILE).read_bytes())
    damaged[7] ^= 0xFF
    (store / "tiny-gemma4" / BIG_FILE).write_bytes(bytes(damaged))
    repaired = models("pull", mirror.url, "--dir", str(store))
    assert repaired.returncode == 0 and "up to date" not in repaired.stdout
    assert models("verify", "tiny-gemma4", "--dir", str(store)).returncode == 0


def test_disk_space_is_checked_before_anything_is_downloaded(mirror: Mirror, tmp_path: Path) -> None:
    manifest = json.loads((mirror.root / "manifest.json").read_text())
    manifest["files"][0]["size"] = 1 << 60  # an exabyte: no disk here has that much free
    (mirror.root / "manifest.json").write_text(json.dumps(manifest))
    result = models("pull", mirror.url, "--dir", str(tmp_path / "models"))
    assert result.returncode == 1 and "not enough disk space" in result.stderr
    assert [path for path, _ in mirror.requests] == ["manifest.json"]


def test_pull_from_a_directory_and_bad_manifests(tmp_path: Path) -> None:
    store = tmp_path / "models"
    result = models("pull", str(TINY), "--dir", str(store), "--name", "from-usb")
    assert result.returncode == 0, result.stderr
    assert models("verify", "from-usb", "--dir", str(store)).returncode == 0
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "manifest.json").write_text(json.dumps({"files": [{"path": "../x", "size": 1, "sha256": "0" * 64}]}))
    refused = models("pull", str(evil), "--dir", str(store))
    assert refused.returncode == 1 and "unsafe path '../x'" in refused.stderr
    missing = models("pull", str(tmp_path / "nowhere"), "--dir", str(store))
    assert missing.returncode == 1 and "not a directory" in missing.stderr
