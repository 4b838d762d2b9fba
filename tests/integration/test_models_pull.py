"""`edge-agent models pull` from a mirror on 127.0.0.1 and from a directory: only the chosen variant (q4 by default),
only the files that changed, resume after a cut, a warning for a mirror that cannot resume, refusal of a corrupted
file with the model in place kept, disk check first, atomic switch keeping the previous model."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rig.mirror import Mirror, make_older

from edge_agent.model.store.files import locate_model

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "models" / "tiny-gemma4"
GRAPHS = ("embed_tokens", "decoder_model_merged", "vision_encoder", "audio_encoder")
BIG_FILE = "onnx/embed_tokens_q4.onnx_data"  # the largest file of the q4 variant, which a pull takes by default


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


Q4_FILES = {
    *("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"),
    *(f"onnx/{graph}_q4.onnx{data}" for graph in GRAPHS for data in ("", "_data")),
}


def test_a_pull_takes_only_the_variant_and_then_only_the_files_that_changed(mirror: Mirror, tmp_path: Path) -> None:
    store = tmp_path / "models"
    first = models("pull", mirror.url, "--dir", str(store))
    assert first.returncode == 0, first.stderr
    assert sorted(path for path, _ in mirror.requests) == sorted(["manifest.json", *Q4_FILES])  # q4 by default
    assert {str(p.relative_to(store / "tiny-gemma4")) for p in (store / "tiny-gemma4").rglob("*") if p.is_file()} == {
        *Q4_FILES,
        "manifest.json",
    }
    assert "ignores HTTP Range" not in first.stderr  # the rig's mirror resumes
    make_older(mirror.root, BIG_FILE)  # a new version on the mirror: one file and its manifest entry changed
    mirror.requests.clear()
    second = models("pull", mirror.url, "--dir", str(store))
    assert second.returncode == 0, second.stderr
    assert [path for path, _ in mirror.requests] == ["manifest.json", BIG_FILE]  # nothing else downloaded
    assert f"{len(Q4_FILES) - 1} unchanged file(s) kept" in second.stdout, second.stdout
    assert (store / "tiny-gemma4" / BIG_FILE).read_bytes() == (mirror.root / BIG_FILE).read_bytes()
    assert (store / "tiny-gemma4.previous" / BIG_FILE).read_bytes() == (TINY / BIG_FILE).read_bytes()
    assert models("verify", "tiny-gemma4", "--dir", str(store)).returncode == 0
    locate_model(store / "tiny-gemma4", "q4", verify=True)
    # a file damaged in place is not kept: it is downloaded again
    damaged = bytearray((store / "tiny-gemma4" / "onnx/decoder_model_merged_q4.onnx").read_bytes())
    damaged[7] ^= 0xFF
    (store / "tiny-gemma4" / "onnx/decoder_model_merged_q4.onnx").write_bytes(bytes(damaged))
    mirror.requests.clear()
    third = models("pull", mirror.url, "--dir", str(store))
    assert third.returncode == 0, third.stderr
    assert [path for path, _ in mirror.requests] == ["manifest.json", "onnx/decoder_model_merged_q4.onnx"]
    # another variant, and every file
    fp32 = models("pull", mirror.url, "--dir", str(store), "--variant", "fp32", "--name", "fp32")
    assert fp32.returncode == 0, fp32.stderr
    locate_model(store / "fp32", "fp32", verify=True)
    assert not (store / "fp32" / BIG_FILE).exists()
    everything = models("pull", mirror.url, "--dir", str(store), "--variant", "all", "--name", "all")
    assert everything.returncode == 0, everything.stderr
    listed = json.loads((mirror.root / "manifest.json").read_text())["files"]
    assert all((store / "all" / entry["path"]).is_file() for entry in listed)


def test_a_mirror_that_ignores_range_is_named_once_with_servers_that_resume(tmp_path: Path) -> None:
    root = tmp_path / "mirror"
    shutil.copytree(TINY, root)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # Python's http.server: no Range support
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        store = tmp_path / "models"
        done = models("pull", url, "--dir", str(store))
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("ignores HTTP Range") == 1, done.stderr
        warning = next(line for line in done.stderr.splitlines() if "ignores HTTP Range" in line)
        assert warning.startswith("warning: ") and "from zero" in warning and "npx http-server" in warning
        assert "nginx" in warning and "http.server` does not resume" in warning
        # a staged half file cannot be resumed from such a mirror: it is downloaded whole, and still verifies
        staging = store / ".staging-again" / BIG_FILE
        staging.parent.mkdir(parents=True)
        staging.write_bytes((root / BIG_FILE).read_bytes()[:1000])
        again = models("pull", url, "--dir", str(store), "--name", "again")
        assert again.returncode == 0 and "resumed" not in again.stdout, again.stdout + again.stderr
        assert again.stderr.count("ignores HTTP Range") == 1
        assert models("verify", "again", "--dir", str(store)).returncode == 0
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
