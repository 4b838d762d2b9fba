"""Locating an export: variants, sidecars, text-only exports, config forms, manifests and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.model.store.files import ModelFilesError, locate_model, parse_model_info, write_manifest

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
