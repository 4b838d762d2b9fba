"""Load-time decoder rewrites: accuracy level, last-position logits, quantized head, and their on-disk cache."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from rig.greedy import greedy

from edge_agent.config.model import ModelConfig
from edge_agent.model.runtime.engine import EngineOptions, TextEngine, open_session
from edge_agent.model.runtime.graph_cache import PreparedGraph, default_cache_dir, prepare_graph
from edge_agent.model.runtime.graph_head import head_bits, quantize_head
from edge_agent.model.runtime.graph_rewrite import (
    LOGITS_TO_KEEP,
    HeadQuantization,
    Rewrites,
    add_logits_to_keep,
    bytes_per_token,
    find_head,
    load_proto,
    set_accuracy_level,
)
from edge_agent.model.store.files import ModelFilesError, locate_model, write_manifest

MODELS = Path(__file__).resolve().parents[2] / "models"
FIXTURES = ["tiny-gemma4", "tiny-gemma4-b"]
AS_EXPORTED = Rewrites(logits_to_keep=False)


def goldens(name: str) -> dict[str, Any]:
    return dict(json.loads((MODELS / name / "goldens.json").read_text()))


def engine(name: str, variant: str, rewrites: Rewrites, cache: Path | None = None) -> TextEngine:
    options = EngineOptions(intra_op_threads=1, rewrites=rewrites, graph_cache=cache)
    return TextEngine(locate_model(MODELS / name, variant), options, encoders=())


class Spy:
    """Records the feeds and logits shapes of a decoder session's runs."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.calls: list[tuple[dict[str, np.ndarray], tuple[int, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def run(self, names: list[str], feeds: dict[str, np.ndarray], options: Any = None) -> list[np.ndarray]:
        outputs = self.session.run(names, feeds, options)
        self.calls.append((feeds, outputs[0].shape))
        return list(outputs)


def levels(model: onnx.ModelProto) -> list[int | None]:
    found = []
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            attr = next((a for a in node.attribute if a.name == "accuracy_level"), None)
            found.append(None if attr is None else attr.i)
    return found


def test_accuracy_level_set_where_unset_kept_where_set_forced_on_request() -> None:
    model = load_proto(str(MODELS / "tiny-gemma4" / "onnx" / "decoder_model_merged_q4.onnx"))
    assert set(levels(model)) == {None}  # our exports leave it unset (0: fp32 compute)
    first = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    first.attribute.append(helper.make_attribute("accuracy_level", 1))
    count = len(levels(model))
    assert set_accuracy_level(model, Rewrites()) == 0
    assert set_accuracy_level(model, Rewrites(int8_activations=True)) == count - 1
    assert levels(model) == [1] + [4] * (count - 1)
    assert set_accuracy_level(model, Rewrites(int8_activations=True)) == 0
    assert set_accuracy_level(model, Rewrites(accuracy_level=0)) == count
    assert set(levels(model)) == {0}


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("variant", ["fp32", "q4"])
def test_last_logits_only_keeps_ids_and_logits(name: str, variant: str) -> None:
    exported = engine(name, variant, AS_EXPORTED)
    rewritten = engine(name, variant, Rewrites())
    assert LOGITS_TO_KEEP not in {i.name for i in exported._decoder.get_inputs()}
    assert LOGITS_TO_KEEP in {i.name for i in rewritten._decoder.get_inputs()}
    for case in goldens(name)["cases"]:
        full, _ = exported.forward(case["prompt_ids"])
        last, _ = rewritten.forward(case["prompt_ids"])
        np.testing.assert_allclose(last, full, rtol=0, atol=1e-5 * max(1.0, float(np.abs(full).max())))
        expected = case["greedy_ids"] if variant == "fp32" else case["q4_greedy_ids"]
        assert greedy(rewritten, case["prompt_ids"], len(expected)) == expected


def test_logits_to_keep_zero_means_every_position() -> None:
    files = locate_model(MODELS / "tiny-gemma4", "q4")
    session = open_session(
        files.decoder.onnx, EngineOptions(), ["CPUExecutionProvider"], prepare_graph(files.decoder, Rewrites())
    )
    reference = engine("tiny-gemma4", "q4", AS_EXPORTED)
    embeds, per_layer = reference.embed([2, 300, 301, 302, 303])
    feeds = {"inputs_embeds": embeds, "per_layer_inputs": per_layer, **reference.empty_cache().tensors}
    feeds |= {"attention_mask": np.ones((1, 5), np.int64), "position_ids": np.arange(5)[None, :]}
    shapes = {k: session.run(["logits"], {**feeds, LOGITS_TO_KEEP: np.array(k)})[0].shape for k in (0, 1, 3)}
    assert shapes == {0: (1, 5, 1024), 1: (1, 1, 1024), 3: (1, 3, 1024)}


def native_copy(tmp_path: Path, name: str = "tiny-gemma4") -> Path:
    """A copy of a fixture whose q4 decoder has `num_logits_to_keep` of its own, as the public files do."""
    root = Path(shutil.copytree(MODELS / name, tmp_path / name))
    graph = root / "onnx" / "decoder_model_merged_q4.onnx"
    model = load_proto(str(graph))
    assert add_logits_to_keep(model)
    graph.write_bytes(model.SerializeToString())  # the weights stay in the copied sidecar
    write_manifest(root)
    return root


def test_a_decoder_with_the_input_is_fed_one(tmp_path: Path) -> None:
    root = native_copy(tmp_path)
    files = locate_model(root, "q4")
    assert (
        prepare_graph(files.decoder, Rewrites(grouped_attention=False, fused_ops=False), [tmp_path / "cache"]) is None
    )
    loaded = TextEngine(files, EngineOptions(intra_op_threads=1, graph_cache=tmp_path / "cache"), encoders=())
    spy = Spy(loaded._decoder)
    loaded._decoder = spy
    case = goldens("tiny-gemma4")["cases"][1]
    assert greedy(loaded, case["prompt_ids"], 8) == case["q4_greedy_ids"][:8]
    assert all(int(feeds[LOGITS_TO_KEEP]) == 1 for feeds, _ in spy.calls)  # transformers.js#1666 fed 0
    assert all(shape == (1, 1, 1024) for _, shape in spy.calls)
    assert spy.calls[0][0]["inputs_embeds"].shape[1] == len(case["prompt_ids"])  # the prefill, too


def test_int8_activations_run_and_stay_close_to_level_0() -> None:
    level0 = engine("tiny-gemma4", "q4", Rewrites())
    level4 = engine("tiny-gemma4", "q4", Rewrites(int8_activations=True))
    prompt = goldens("tiny-gemma4")["cases"][0]["prompt_ids"]
    a, _ = level0.forward(prompt)
    b, _ = level4.forward(prompt)
    assert not np.array_equal(a, b)  # the kernels did change
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()


@pytest.mark.parametrize(("head", "tolerance"), [("int8", 0.02), ("int4", 0.2)])
def test_quantized_head_replaces_the_float_matmul(tmp_path: Path, head: HeadQuantization, tolerance: float) -> None:
    files = locate_model(MODELS / "tiny-gemma4", "fp32")
    prepared = prepare_graph(files.decoder, Rewrites(head=head))
    assert prepared is not None and len(prepared.tensors) == 2
    model = onnx.load_from_string(prepared.model)
    head_node = find_head(model.graph)
    assert head_node is not None and head_node.node.op_type == "MatMulNBits"
    before, after = bytes_per_token(load_proto(str(files.decoder.onnx)).graph), bytes_per_token(model.graph)
    assert after["MatMulNBits"] > 0 and after["float MatMul"] < before["float MatMul"]
    reference, _ = engine("tiny-gemma4", "fp32", Rewrites()).forward(list(range(3, 30)))
    quantized, _ = engine("tiny-gemma4", "fp32", Rewrites(head=head), tmp_path).forward(list(range(3, 30)))
    error = np.abs(quantized - reference).max() / np.abs(reference).max()
    assert 0 < error < tolerance
    cached, _ = engine("tiny-gemma4", "fp32", Rewrites(head=head), tmp_path).forward(list(range(3, 30)))
    np.testing.assert_array_equal(cached, quantized)


def test_auto_head_is_int8_only_in_an_int4_decoder() -> None:
    q4 = load_proto(str(MODELS / "tiny-gemma4" / "onnx" / "decoder_model_merged_q4.onnx"))
    fp32 = load_proto(str(MODELS / "tiny-gemma4" / "onnx" / "decoder_model_merged.onnx"))
    assert (head_bits(q4, "auto"), head_bits(fp32, "auto"), head_bits(fp32, "int4"), head_bits(q4, "keep")) == (
        8,
        None,
        4,
        None,
    )
    files = locate_model(MODELS / "tiny-gemma4", "q4")
    rewritten = prepare_graph(
        files.decoder, Rewrites(logits_to_keep=False, head="auto", grouped_attention=False, fused_ops=False)
    )
    assert rewritten is None  # the q4 head is INT4 already: nothing to do


def test_tied_transposed_head_is_found_sliced_and_quantized(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = rng.standard_normal((96, 64)).astype(np.float32)  # [vocab, hidden], as embed_tokens holds it
    nodes = [
        helper.make_node("Transpose", ["table"], ["table_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["hidden", "table_t"], ["raw"]),
        helper.make_node("Div", ["raw", "cap"], ["scaled"]),
        helper.make_node("Tanh", ["scaled"], ["capped"]),
        helper.make_node("Mul", ["capped", "cap"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", 96])],
        [onnx.numpy_helper.from_array(table, "table"), onnx.numpy_helper.from_array(np.array(30.0, np.float32), "cap")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert add_logits_to_keep(model)
    tensors = quantize_head(model, tmp_path, 8, 4)
    assert [n.op_type for n in model.graph.node][-4:] == ["MatMulNBits", "Div", "Tanh", "Mul"]
    assert "table" not in {t.name for t in model.graph.initializer}  # the float copy is no longer read
    session = open_session(
        tmp_path / "x.onnx",
        EngineOptions(),
        ["CPUExecutionProvider"],
        PreparedGraph(model.SerializeToString(), tmp_path, tensors),
    )
    hidden = rng.standard_normal((1, 5, 64)).astype(np.float32)
    (logits,) = session.run(["logits"], {"hidden": hidden, LOGITS_TO_KEEP: np.array(1)})
    expected = 30 * np.tanh(hidden[:, -1:] @ table.T / 30)
    assert logits.shape == (1, 1, 96)
    assert np.abs(logits - expected).max() < 0.05 * np.abs(expected).max()


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def test_cache_is_reused_rebuilt_when_corrupt_or_stale(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edge_agent.model.runtime")
    root = Path(shutil.copytree(MODELS / "tiny-gemma4", tmp_path / "m"))
    files, cache, rewrites = locate_model(root, "q4"), tmp_path / "cache", Rewrites(int8_activations=True)
    first = prepare_graph(files.decoder, rewrites, [cache])
    assert first is not None and len(entries(cache)) == 1
    assert "weights read per decoded token: MatMulNBits" in caplog.text
    caplog.clear()
    assert prepare_graph(files.decoder, rewrites, [cache]) == first
    assert "from cache" in caplog.text
    graph = entries(cache)[0] / "graph.onnx"
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    caplog.clear()
    assert prepare_graph(files.decoder, rewrites, [cache]) == first  # rebuilt, not trusted
    assert "sha256 does not match; rebuilding" in caplog.text
    source = files.decoder.onnx
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    stale = entries(cache)
    assert prepare_graph(files.decoder, rewrites, [cache]) == first
    assert len(entries(cache)) == 1 and entries(cache) != stale  # the stale entry was replaced
    other = prepare_graph(files.decoder, Rewrites(), [cache])
    assert other is not None and other.model != first.model


def test_unwritable_cache_falls_back_to_the_next_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    files = locate_model(MODELS / "tiny-gemma4", "q4")
    prepared = prepare_graph(files.decoder, Rewrites(), [tmp_path / "file" / "cache", tmp_path / "second"])
    assert prepared is not None and len(entries(tmp_path / "second")) == 1
    assert prepare_graph(files.decoder, Rewrites(), [tmp_path / "file" / "cache"]) == prepared  # in memory


def test_unreadable_graph_is_a_model_files_error(tmp_path: Path) -> None:
    root = Path(shutil.copytree(MODELS / "tiny-gemma4", tmp_path / "m"))
    (root / "onnx" / "decoder_model_merged_q4.onnx").write_bytes(b"\x08garbage")
    with pytest.raises(ModelFilesError, match=r"decoder_model_merged_q4\.onnx: not a readable ONNX graph"):
        TextEngine(locate_model(root, "q4", verify=False))


def test_options_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "edge-agent" / "graphs"
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "systemd"))
    assert default_cache_dir() == tmp_path / "systemd" / "graphs"
    options = EngineOptions.from_config(ModelConfig(path=MODELS / "tiny-gemma4"))
    assert options.rewrites == Rewrites(int8_activations=True, head="auto")
    assert options.graph_cache == tmp_path / "systemd" / "graphs"
    configured = ModelConfig(path=MODELS / "tiny-gemma4", accuracy_level=0, graph_cache_dir=tmp_path / "c")
    assert EngineOptions.from_config(configured).rewrites.accuracy_level == 0
    assert EngineOptions.from_config(configured).graph_cache == tmp_path / "c"
    assert EngineOptions().rewrites == Rewrites(int8_activations=False, logits_to_keep=True, head="keep")
