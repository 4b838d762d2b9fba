"""`edge-agent models pull hf://OWNER/NAME` against a fake hub on 127.0.0.1 (HF_ENDPOINT): only the variant's files,
checked against the hub's sha256 / git blob ids, a corrupted file refused with the model in place kept, a cut
connection resumed by huggingface_hub, a killed pull resumed by the next one, a private repo, and the errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.hub import FakeHub
from rig.mirror import make_older

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "models" / "tiny-gemma4"
REPO_ID = "onnx-community/tiny-gemma4-ONNX"
SOURCE = f"hf://{REPO_ID}"
NAME = "tiny-gemma4-ONNX"  # the repo's name: the default model directory name
BIG = "onnx/embed_tokens_q4.onnx_data"  # padded past huggingface_hub's 10 MiB write block (see `repo`)
BLOCK = 10 << 20
METADATA = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
GRAPHS = ("embed_tokens", "decoder_model_merged", "vision_encoder", "audio_encoder")
Q4_FILES = {*METADATA, *(f"onnx/{graph}_q4.onnx{data}" for graph in GRAPHS for data in ("", "_data"))}


def edge_agent(hub: FakeHub | str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, huggingface_hub pointed at the fake hub (it reads HF_ENDPOINT at import)."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True, timeout=120, env=hub_env(hub, env)
    )


def hub_env(hub: FakeHub | str, extra: dict[str, str]) -> dict[str, str]:
    home = Path(os.environ["STATE_DIRECTORY"]) / "hf-home"  # no token or cache from $HOME
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**clean, "HF_ENDPOINT": hub if isinstance(hub, str) else hub.url, "HF_HOME": str(home), **extra}


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The tiny model as a hub repo: no manifest.json, a .gitattributes and a README as on the hub; the q4 embedding
    data padded with 12 MiB of zeros past its tensors (onnxruntime never reads them), so that a cut can fall after
    huggingface_hub's first 10 MiB block and a resume shows as a Range request."""
    root = tmp_path / "hub" / NAME
    shutil.copytree(TINY, root, ignore=shutil.ignore_patterns("manifest.json"))
    (root / ".gitattributes").write_text("*.onnx filter=lfs diff=lfs merge=lfs -text\n*.onnx_data* filter=lfs\n")
    (root / "README.md").write_text("---\nlibrary_name: transformers.js\n---\n")
    with (root / BIG).open("ab") as padded:
        padded.write(bytes(12 << 20))
    return root


@pytest.fixture
def hub(repo: Path) -> Iterator[FakeHub]:
    server = FakeHub(repo, REPO_ID).start()
    yield server
    server.stop()


def test_a_q4_pull_takes_only_the_q4_files_which_verify_and_generate(hub: FakeHub, tmp_path: Path) -> None:
    store = tmp_path / "models"
    done = edge_agent(hub, "models", "pull", SOURCE, "--variant", "q4", "--dir", str(store))
    assert done.returncode == 0, done.stderr
    assert f"pulled {store / NAME} at commit {hub.commit}" in done.stdout
    assert "HTTP Request" not in done.stderr  # progress lines, not the HTTP client's log
    model = store / NAME
    assert files_under(model) == {*Q4_FILES, "manifest.json"}
    assert not (store / f".staging-{NAME}").exists()
    resolved = [url.partition("/resolve/")[2] for _, url, _ in hub.requests if "/resolve/" in url]
    assert sorted(resolved) == sorted(f"{hub.commit}/{path}" for path in Q4_FILES)  # each once, from one commit
    assert ("GET", f"/api/models/{REPO_ID}?blobs=true", None) in hub.requests
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["name"] == NAME
    for entry in manifest["files"]:  # our manifest format, with sha256 for the git files too
        data = (model / entry["path"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert hub.files[entry["path"]].sha256 in (None, entry["sha256"])
    assert edge_agent(hub, "models", "verify", NAME, "--dir", str(store)).returncode == 0
    case = json.loads((TINY / "goldens.json").read_text())["cases"][2]
    prompt = ",".join(map(str, case["prompt_ids"]))
    args = ["--prompt-ids", prompt, "--greedy", "--ignore-eos", "--max-new-tokens", "32", "--json"]
    generated = edge_agent(hub, "generate", "--model", str(model), "--variant", "q4", "--file-numerics", *args)
    assert generated.returncode == 0, generated.stderr
    assert json.loads(generated.stdout)["ids"] == case["q4_greedy_ids"]


def test_a_corrupted_file_is_refused_and_the_model_in_place_stays(hub: FakeHub, tmp_path: Path) -> None:
    store = tmp_path / "models"
    assert edge_agent(hub, "models", "pull", SOURCE, "--dir", str(store)).returncode == 0
    for older in ("onnx/decoder_model_merged_q4.onnx_data", "generation_config.json"):
        make_older(store / NAME, older)  # the hub now has a newer version of these (the others are kept as they are)
    before = {path: (store / NAME / path).read_bytes() for path in Q4_FILES}
    for path, expected in [
        ("onnx/decoder_model_merged_q4.onnx_data", "sha256 does not match the hub's (LFS)"),
        ("generation_config.json", "git blob id (sha1) does not match the hub's"),
    ]:
        served = hub.root / path
        good = served.read_bytes()
        corrupted = bytearray(good)
        corrupted[len(good) // 3] ^= 0xFF  # same size, one byte off
        served.write_bytes(bytes(corrupted))
        refused = edge_agent(hub, "models", "pull", SOURCE, "--dir", str(store))
        assert refused.returncode == 1 and f"{path}: {expected}: refused" in refused.stderr, refused.stderr
        assert {p: (store / NAME / p).read_bytes() for p in Q4_FILES} == before
        assert not (store / f"{NAME}.previous").exists()
        staging = store / f".staging-{NAME}"
        assert not (staging / path).exists()  # the bad file is not kept to resume from
        assert (staging / "config.json").is_file()  # the files verified before it are
        shutil.rmtree(staging)  # so that the next corrupted file is downloaded, not taken from there
        served.write_bytes(good)
    assert edge_agent(hub, "models", "verify", NAME, "--dir", str(store)).returncode == 0
    again = edge_agent(hub, "models", "pull", SOURCE, "--dir", str(store))
    assert again.returncode == 0 and "kept as" in again.stdout, again.stderr
    assert files_under(store / f"{NAME}.previous") == {*Q4_FILES, "manifest.json"}
    up_to_date = edge_agent(hub, "models", "pull", SOURCE, "--dir", str(store))
    assert up_to_date.returncode == 0 and up_to_date.stdout.startswith("up to date"), up_to_date.stderr


def test_a_cut_connection_is_resumed_by_huggingface_hub_with_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    store = tmp_path / "models"
    hub.cut_once[BIG] = BLOCK + (1 << 19)  # half a MiB into the second block
    done = edge_agent(hub, "models", "pull", SOURCE, "--dir", str(store))
    assert done.returncode == 0, done.stderr
    assert "Trying to resume download" in done.stderr  # huggingface_hub's warning
    assert hub.downloads(BIG) == [None, f"bytes={BLOCK}-"]  # it kept the first block and asked for the rest
    assert edge_agent(hub, "models", "verify", NAME, "--dir", str(store)).returncode == 0


def test_a_killed_pull_resumes_from_the_staging_directory(hub: FakeHub, tmp_path: Path) -> None:
    store = tmp_path / "models"
    hub.stall_once[BIG] = BLOCK + (1 << 19)
    command = [sys.executable, "-m", "edge_agent", "models", "pull", SOURCE, "--dir", str(store)]
    first = subprocess.Popen(command, env=hub_env(hub, {}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = store / f".staging-{NAME}" / BIG
    try:
        assert hub.stalled.wait(60)
        deadline = time.monotonic() + 30
        while not (partial.is_file() and partial.stat().st_size >= BLOCK) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.kill()  # a power cut: no clean-up runs
        first.wait(30)
        hub.release.set()
    assert partial.stat().st_size == BLOCK
    assert not (store / NAME).exists()
    second = edge_agent(hub, "models", "pull", SOURCE, "--dir", str(store))
    assert second.returncode == 0, second.stderr
    assert "10.0 MB resumed" in second.stdout
    assert hub.downloads(BIG) == [None, f"bytes={BLOCK}-"]
    assert edge_agent(hub, "models", "verify", NAME, "--dir", str(store)).returncode == 0


def test_a_private_repo_needs_hf_token_and_a_revision_can_be_pinned(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "models"
    hub = FakeHub(repo, REPO_ID, token="hf_private").start()
    try:
        anonymous = edge_agent(hub, "models", "pull", SOURCE, "--dir", str(store))
        assert anonymous.returncode == 1 and f"{REPO_ID}: no such model on {hub.url}" in anonymous.stderr
        assert "HF_TOKEN" in anonymous.stderr
        pinned = ["--revision", hub.commit, "--name", "pinned", "--variant", "fp32"]
        done = edge_agent(hub, "models", "pull", SOURCE, "--dir", str(store), *pinned, HF_TOKEN="hf_private")
        assert done.returncode == 0, done.stderr
        assert f"/api/models/{REPO_ID}/revision/{hub.commit}?blobs=true" in [url for _, url, _ in hub.requests]
        fp32 = {*METADATA, *(f"onnx/{graph}.onnx{data}" for graph in GRAPHS for data in ("", "_data"))}
        assert files_under(store / "pinned") == {*fp32, "manifest.json"}
        missing = edge_agent(
            hub, "models", "pull", SOURCE, "--revision", "v9", "--dir", str(store), HF_TOKEN="hf_private"
        )
        assert missing.returncode == 1 and f"{REPO_ID}: no revision 'v9'" in missing.stderr
    finally:
        hub.stop()


def test_what_cannot_be_pulled_is_said_before_any_download(hub: FakeHub, tmp_path: Path) -> None:
    store = str(tmp_path / "models")
    fp16 = edge_agent(hub, "models", "pull", SOURCE, "--variant", "fp16", "--dir", store)
    assert fp16.returncode == 1
    assert "onnx/embed_tokens_fp16.onnx: missing for variant 'fp16'; this export has: fp32, q4" in fp16.stderr
    hub.files[BIG].size = 1 << 60  # the listing says an exabyte: no disk here has that much free
    full = edge_agent(hub, "models", "pull", SOURCE, "--dir", store)
    assert full.returncode == 1 and "not enough disk space" in full.stderr
    assert not [url for _, url, _ in hub.requests if "/resolve/" in url]
    bad = edge_agent(hub, "models", "pull", "hf://just-a-name", "--dir", store)
    assert bad.returncode == 1 and "give a hub model repository as hf://OWNER/NAME" in bad.stderr
    mirror = edge_agent(hub, "models", "pull", str(TINY), "--revision", "main", "--dir", store)
    assert mirror.returncode == 1 and "--revision is for hub sources" in mirror.stderr
    every = edge_agent(hub, "models", "pull", SOURCE, "--variant", "all", "--dir", store)
    assert every.returncode == 1 and "--variant all is for mirrors and directories" in every.stderr
    offline = edge_agent("http://127.0.0.1:9", "models", "pull", SOURCE, "--dir", store)
    assert offline.returncode == 1 and "http://127.0.0.1:9: cannot reach the hub" in offline.stderr
    assert not (Path(store) / NAME).exists()


def test_a_short_name_pulls_the_public_export_q4_with_progress(repo: Path, tmp_path: Path) -> None:
    """`models pull e2b` is hf://onnx-community/gemma-4-E2B-it-ONNX, variant q4 (the fake hub serves the tiny model
    under that id); a full repo id, with or without hf://, names the same repo."""
    store = tmp_path / "models"
    hub = FakeHub(repo, "onnx-community/gemma-4-E2B-it-ONNX").start()
    try:
        done = edge_agent(hub, "models", "pull", "e2b", "--dir", str(store))
        assert done.returncode == 0, done.stderr
        model = store / "gemma-4-E2B-it-ONNX"
        assert files_under(model) == {*Q4_FILES, "manifest.json"}
        assert f"pulled {model} at commit {hub.commit}" in done.stdout
        lines = done.stderr.splitlines()  # not a terminal: a few plain lines per stage, each with the total
        downloading = [line for line in lines if line.startswith("downloading ")]
        assert 2 <= len(downloading) <= 5 and downloading[-1].startswith("downloading 13.") and "(100%)" in lines[-1]
        assert any(line.startswith("verifying checksums ") for line in lines)
        full = edge_agent(hub, "models", "pull", "onnx-community/gemma-4-E2B-it-ONNX", "--dir", str(store))
        assert full.returncode == 0 and full.stdout.startswith("up to date"), full.stdout + full.stderr
        assert any(line.startswith("checking the files in place ") for line in full.stderr.splitlines())
        fp32 = edge_agent(hub, "models", "pull", "E2B", "--variant", "fp32", "--name", "e2b-fp32", "--dir", str(store))
        assert fp32.returncode == 0, fp32.stderr
        assert "onnx/embed_tokens.onnx" in files_under(store / "e2b-fp32")
    finally:
        hub.stop()
    available = edge_agent(hub, "models", "list", "--available")
    assert available.returncode == 0
    for name, repo_id in [("e2b", "onnx-community/gemma-4-E2B-it-ONNX"), ("e4b", "onnx-community/gemma-4-E4B-it-ONNX")]:
        row = next(line for line in available.stdout.splitlines() if line.startswith(name + " "))
        assert repo_id in row and " q4 " in row and row.count("about ") == 2
    listed = json.loads(edge_agent(hub, "models", "list", "--available", "--json").stdout)
    assert [m["name"] for m in listed] == ["e2b", "e4b"] and listed[0][
        "source"
    ] == "hf://onnx-community/gemma-4-E2B-it-ONNX"


def test_without_huggingface_hub_the_error_says_what_to_install(tmp_path: Path) -> None:
    absent = "import sys; sys.modules['huggingface_hub'] = None; from edge_agent.cli import main; sys.exit(main())"
    args = ["models", "pull", SOURCE, "--dir", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", absent, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "pip install 'edge-agent-node[hub]'" in done.stderr, done.stderr
    # the daemon never imports it: the CLI and the application load without it
    check = "import sys, edge_agent.cli, edge_agent.app; sys.exit('huggingface_hub' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], timeout=60).returncode == 0
