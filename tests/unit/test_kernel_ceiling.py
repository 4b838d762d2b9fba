"""bench/kernel_ceiling.py: the decoder's MatMulNBits shapes as the engine runs them, and their bytes as stored."""

from __future__ import annotations

import sys
from pathlib import Path

from edge_agent.model.runtime.graph_rewrite import Rewrites
from edge_agent.model.store.files import locate_model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import kernel_ceiling  # noqa: E402  (a bench script, not a package)
import roofline  # noqa: E402

DECODER = locate_model(REPO / "models/tiny-gemma4", "q4", verify=False).decoder.onnx


def test_shapes_carry_the_level_the_engine_gives_them() -> None:
    as_stored = kernel_ceiling.decoder_shapes(DECODER, Rewrites())
    rewritten = kernel_ceiling.decoder_shapes(DECODER, Rewrites(int8_activations=True))
    assert {s.accuracy_level for s in as_stored} == {0}
    assert {s.accuracy_level for s in rewritten} == {4}
    assert sum(as_stored.values()) == sum(rewritten.values()) > 0


def test_bytes_per_token_are_the_stored_matmulnbits_tensors_and_the_kernel_is_timed() -> None:
    ceiling = kernel_ceiling.measure(DECODER, Rewrites(int8_activations=True), threads=1, shape_bytes=200_000)
    assert ceiling["bytes_per_token"] == roofline.graph_bytes(DECODER)["MatMulNBits"]
    assert ceiling["seconds_per_token"] > 0 and ceiling["tokens_per_s"] == 1 / ceiling["seconds_per_token"]
    assert all(row["seconds"] > 0 for row in ceiling["shapes"])
    assert kernel_ceiling.describe(ceiling)[-1].startswith("  MatMulNBits alone at the model's shapes (1 thread(s))")
