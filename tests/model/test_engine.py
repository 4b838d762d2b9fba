"""The text engine on the tiny Gemma 4 exports: exact against PyTorch, cached == uncached, bad files refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rig.greedy import greedy

from edge_agent.model.runtime.engine import EngineError, EngineOptions, TextEngine, choose_providers
from edge_agent.model.store.files import ModelFilesError, locate_model

MODELS = Path(__file__).resolve().parents[2] / "models"
FIXTURES = ["tiny-gemma4", "tiny-gemma4-b"]


def goldens(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((MODELS / name / "goldens.json").read_text())


@pytest.fixture(scope="module", params=FIXTURES)
def fp32(request: pytest.FixtureRequest) -> tuple[str, TextEngine]:
    return request.param, TextEngine(locate_model(MODELS / request.param, "fp32"))


def test_greedy_ids_and_logits_equal_pytorch_full_recompute(fp32: tuple[str, TextEngine]) -> None:
    name, engine = fp32
    cases = goldens(name)
    window = cases["window"]
    assert any(len(c["prompt_ids"]) < window for c in cases["cases"])
    assert any(len(c["prompt_ids"]) > window for c in cases["cases"])
    for case in cases["cases"]:
        logits, _ = engine.forward(case["prompt_ids"])
        expected = np.asarray(case["last_logits"])
        # fp32 against the float64 reference: within 1e-4 of the logits' scale
        assert np.abs(logits - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
        assert greedy(engine, case["prompt_ids"], 32) == case["greedy_ids"]


def test_cached_decoding_equals_uncached(fp32: tuple[str, TextEngine]) -> None:
    name, engine = fp32
    prompt = goldens(name)["cases"][1]["prompt_ids"]
    cached = greedy(engine, prompt, 20)
    sequence = list(prompt)
    for _ in range(20):
        logits, _ = engine.forward(sequence)  # the whole sequence again, no cache
        sequence.append(int(np.argmax(logits)))
    assert sequence[len(prompt) :] == cached


def test_kv_cache_is_sized_from_the_graph(fp32: tuple[str, TextEngine]) -> None:
    name, engine = fp32
    config = json.loads((MODELS / name / "config.json").read_text())["text_config"]
    cache = engine.empty_cache()
    assert len(cache.tensors) == 2 * (config["num_hidden_layers"] - config["num_kv_shared_layers"])
    assert all(t.shape[0] == 1 and t.shape[2] == 0 for t in cache.tensors.values())
    head_dims = {t.shape[3] for t in cache.tensors.values()}
    assert head_dims == {config["head_dim"], config["global_head_dim"]}  # sliding and global layers differ


@pytest.mark.parametrize("name", FIXTURES)
def test_q4_ids_equal_the_reference_client(name: str) -> None:
    """The `_q4` (MatMulNBits) graphs give exactly the ids transformers.js gives on the same files."""
    files = locate_model(MODELS / name, "q4")
    assert files.decoder.onnx.name == "decoder_model_merged_q4.onnx"
    engine = TextEngine(files, EngineOptions(intra_op_threads=1))
    for case in goldens(name)["cases"]:
        assert greedy(engine, case["prompt_ids"], len(case["q4_greedy_ids"])) == case["q4_greedy_ids"]


def test_corrupted_weights_are_refused_by_checksum(tmp_path: Path) -> None:
    copy = shutil.copytree(MODELS / "tiny-gemma4", tmp_path / "m")
    data = copy / "onnx" / "decoder_model_merged_q4.onnx_data"
    raw = bytearray(data.read_bytes())
    raw[1000] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ModelFilesError, match=r"decoder_model_merged_q4\.onnx_data: sha256 does not match"):
        locate_model(copy, "q4")


def test_truncated_weights_without_manifest_name_the_file(tmp_path: Path) -> None:
    copy = shutil.copytree(MODELS / "tiny-gemma4", tmp_path / "m")
    (copy / "manifest.json").unlink()
    data = copy / "onnx" / "decoder_model_merged.onnx_data"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(ModelFilesError, match=r"decoder_model_merged\.onnx: onnxruntime cannot load it"):
        TextEngine(locate_model(copy, "fp32"))


def test_providers() -> None:
    assert choose_providers([], ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers([], ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(EngineError, match=r"TensorrtExecutionProvider not available .* installed: CPU"):
        choose_providers(["TensorrtExecutionProvider"], ["CPUExecutionProvider"])
