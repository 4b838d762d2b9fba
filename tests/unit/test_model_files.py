"""Locating an export: variants, sidecars, text-only exports, config forms, manifests and bad files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from edge_agent.model.store.files import ModelFilesError, locate_model, parse_model_info, write_manifest
from edge_agent.model.store.manifest import read_manifest, verify_all
from edge_agent.model.store.verified import RACY_S, VerifiedCache

TEXT_CONFIG = {
    "vocab_size": 1024,
    "num_hidden_layers": 6,
    "num_kv_shared_layers": 2,
    "sliding_window": 8,
    "max_position_embeddings": 512,
    "pad_token_id": 0,
}


def make_export(root: Path, suffixes: tuple[str, ...] = ("", "_q4"), media: bool = False) -> Path:
    (root / "onnx").mkdir(parents=True)
    graphs = ["embed_tokens", "decoder_model_merged"] + (["vision_encoder", "audio_encoder"] if media else [])
    for graph in graphs:
        for suffix in suffixes:
            (root / "onnx" / f"{graph}{suffix}.onnx").write_bytes(b"graph" + suffix.encode())
            (root / "onnx" / f"{graph}{suffix}.onnx_data").write_bytes(b"weights" * 10)
    config = {"model_type": "gemma4", "text_config": TEXT_CONFIG, "image_token_id": 20, "audio_token_id": 21}
    (root / "config.json").write_text(json.dumps(config))
    (root / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 106], "top_k": 64}))
    (root / "tokenizer.json").write_text("{}")
    return root


def test_variant_picks_suffixed_graphs_and_their_sidecars(tmp_path: Path) -> None:
    root = make_export(tmp_path / "m")
    (root / "onnx" / "decoder_model_merged_q4.onnx_data_1").write_bytes(b"more")
    files = locate_model(root, "q4")
    assert files.decoder.onnx.name == "decoder_model_merged_q4.onnx"
    assert [p.name for p in files.decoder.sidecars] == [
        "decoder_model_merged_q4.onnx_data",
        "decoder_model_merged_q4.onnx_data_1",
    ]
    assert locate_model(root, "fp32").embed_tokens.onnx.name == "embed_tokens.onnx"
    assert files.generation.eos_token_ids == (1, 106) and files.generation.sampling == {"top_k": 64}
    assert files.info.image_token_id == 20 and files.info.num_kv_shared_layers == 2


def test_text_only_export_reports_media_unavailable(tmp_path: Path) -> None:
    files = locate_model(make_export(tmp_path / "m"), "q4")
    assert files.modalities == {"text": True, "image": False, "audio": False}
    media = locate_model(make_export(tmp_path / "n", media=True), "q4")
    assert media.modalities == {"text": True, "image": True, "audio": True}


def test_missing_variant_names_the_file_and_what_exists(tmp_path: Path) -> None:
    root = make_export(tmp_path / "m")
    with pytest.raises(
        ModelFilesError, match=r"embed_tokens_fp16\.onnx: missing for variant 'fp16'; this export has: fp32, q4"
    ):
        locate_model(root, "fp16")
    with pytest.raises(ModelFilesError, match="unknown model variant 'q3'"):
        locate_model(root, "q3")


def test_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match=r"config\.json: missing \(is .* a Gemma 4 ONNX export\?\)"):
        locate_model(tmp_path, "q4")
    with pytest.raises(ModelFilesError, match="not a directory"):
        locate_model(tmp_path / "absent", "q4")


def test_broken_json_is_named(tmp_path: Path) -> None:
    root = make_export(tmp_path / "m")
    (root / "config.json").write_text('{"text_config": ')
    with pytest.raises(ModelFilesError, match=r"config\.json: not readable JSON"):
        locate_model(root, "q4")


def test_flat_text_config_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gemma4_text", **TEXT_CONFIG}))
    info = parse_model_info(path)
    assert info.model_type == "gemma4_text" and info.num_hidden_layers == 6 and info.image_token_id is None


def test_manifest_catches_truncated_and_corrupted_files(tmp_path: Path) -> None:
    root = make_export(tmp_path / "m")
    write_manifest(root)
    locate_model(root, "q4")  # intact
    data = root / "onnx" / "decoder_model_merged_q4.onnx_data"
    original = data.read_bytes()
    data.write_bytes(original[:-3])
    with pytest.raises(ModelFilesError, match=r"decoder_model_merged_q4\.onnx_data: 67 bytes, manifest\.json says 70"):
        locate_model(root, "q4")
    data.write_bytes(original[:-1] + b"X")
    with pytest.raises(ModelFilesError, match=r"decoder_model_merged_q4\.onnx_data: sha256 does not match"):
        locate_model(root, "q4")
    locate_model(root, "fp32")  # the damaged file belongs to another variant
    locate_model(root, "q4", verify=False)  # checking can be skipped


def q4_bytes(root: Path) -> int:
    """What verifying the q4 variant reads: its graphs and sidecars and the metadata files."""
    used = [p for p in (root / "onnx").iterdir() if "_q4." in p.name]
    return sum(p.stat().st_size for p in used) + sum(
        (root / name).stat().st_size for name in ("config.json", "generation_config.json", "tokenizer.json")
    )


def test_files_verified_and_unchanged_are_not_hashed_again_and_any_change_is(tmp_path: Path) -> None:
    root = make_export(tmp_path / "m")
    write_manifest(root)
    time.sleep(RACY_S + 0.1)  # older than the racy window: a later write cannot share their timestamps
    cache_file = tmp_path / "cache" / "verified.json"
    first = VerifiedCache(cache_file)
    progress: list[tuple[int, int]] = []
    locate_model(root, "q4", verified=first, progress=lambda done, total: progress.append((done, total)))
    assert first.hashes_skipped == 0 and cache_file.is_file()
    total = q4_bytes(root)
    assert progress[-1] == (total, total) and progress == sorted(progress)
    again = VerifiedCache(cache_file)  # a new process: read back from the file
    progress.clear()
    locate_model(root, "q4", verified=again, progress=lambda done, total: progress.append((done, total)))
    assert again.hashes_skipped == 7 and progress[-1] == (total, total)  # 4 graph files + 3 metadata files
    data = root / "onnx" / "decoder_model_merged_q4.onnx_data"
    stat = data.stat()
    data.write_bytes(data.read_bytes()[:-1] + b"X")  # same size, same inode, new content
    with pytest.raises(ModelFilesError, match=r"decoder_model_merged_q4\.onnx_data: sha256 does not match"):
        locate_model(root, "q4", verified=VerifiedCache(cache_file))
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime put back: the ctime still tells
    assert data.stat().st_mtime_ns == stat.st_mtime_ns and data.stat().st_ino == stat.st_ino
    with pytest.raises(ModelFilesError, match=r"decoder_model_merged_q4\.onnx_data: sha256 does not match"):
        locate_model(root, "q4", verified=VerifiedCache(cache_file))
    problems = verify_all(root, read_manifest(root), verified=VerifiedCache(cache_file))
    assert [p.path for p in problems] == ["onnx/decoder_model_merged_q4.onnx_data"]


def test_a_file_written_just_before_it_is_hashed_is_not_remembered(tmp_path: Path) -> None:
    root = make_export(tmp_path / "m")
    write_manifest(root)  # now: within the racy window, a rewrite in the same timestamp tick would go unseen
    cache = VerifiedCache(tmp_path / "verified.json")
    locate_model(root, "q4", verified=cache)
    locate_model(root, "q4", verified=cache)
    assert cache.hashes_skipped == 0 and cache.entries == {}
    data = root / "onnx" / "decoder_model_merged_q4.onnx_data"
    data.write_bytes(data.read_bytes()[:-1] + b"X")
    with pytest.raises(ModelFilesError, match="sha256 does not match"):
        locate_model(root, "q4", verified=cache)


def test_the_cache_file_is_per_model_and_a_broken_one_is_ignored(tmp_path: Path) -> None:
    one, two = make_export(tmp_path / "one"), make_export(tmp_path / "two")
    a, b = VerifiedCache.for_model(one, tmp_path / "c"), VerifiedCache.for_model(two, tmp_path / "c")
    assert a.path != b.path and a.path is not None and a.path.name.startswith("one-")
    assert VerifiedCache.for_model(one, tmp_path / "c") is a  # one per process: swaps reuse what it learnt
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert VerifiedCache(broken).entries == {}
    unwritable = VerifiedCache(tmp_path / "a-file" / "below-a-file.json")
    (tmp_path / "a-file").write_text("")
    write_manifest(one)
    time.sleep(RACY_S + 0.1)
    locate_model(one, "q4", verified=unwritable)  # cannot write: remembered in memory, a warning logged
    assert unwritable.path is None and len(unwritable.entries) == 7
    locate_model(one, "q4", verified=unwritable)
    assert unwritable.hashes_skipped == 7
