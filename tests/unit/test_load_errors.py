"""onnxruntime's refusals told apart: out of memory and a failing provider are not a corrupt model file."""

from __future__ import annotations

from pathlib import Path

from onnxruntime.capi.onnxruntime_pybind11_state import Fail, RuntimeException

from edge_agent.model.runtime.engine import EngineError, load_error
from edge_agent.model.store.manifest import ModelFilesError

GRAPH = Path("/models/e2b/onnx/decoder_model_merged_q4.onnx")
CPU = ["CPUExecutionProvider"]


def test_out_of_memory_is_said_as_such() -> None:
    for exc in (
        MemoryError(),
        RuntimeException("std::bad_alloc"),
        Fail("Failed to allocate memory for requested buffer"),
    ):
        error = load_error(GRAPH, exc, CPU)
        assert isinstance(error, EngineError) and not isinstance(error, ModelFilesError)
        assert "out of memory" in str(error) and str(GRAPH) in str(error)


def test_a_failing_gpu_provider_is_not_a_corrupt_file() -> None:
    exc = Fail("CUDA failure 100: no CUDA-capable device is detected")
    error = load_error(GRAPH, exc, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert isinstance(error, EngineError) and "execution provider CUDAExecutionProvider" in str(error)
    assert isinstance(load_error(GRAPH, exc, CPU), ModelFilesError)  # no GPU asked for: the file is at fault


def test_anything_else_is_a_graph_this_onnxruntime_cannot_load() -> None:
    error = load_error(GRAPH, Fail("Protobuf parsing failed.\nmore"), CPU)
    assert isinstance(error, ModelFilesError)
    assert (
        str(error)
        == f"{GRAPH}: onnxruntime cannot load it (not a valid graph for this onnxruntime): Protobuf parsing failed."
    )
