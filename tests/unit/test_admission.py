"""Admission: memory estimates from the files and config.json, and the load / fall back / refuse decision."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_agent.config.model import ModelConfig
from edge_agent.config.node import HealthConfig
from edge_agent.health.admission import (
    MIB,
    MemoryEstimate,
    admit,
    decide,
    estimate_memory,
    fallback_location,
)
from edge_agent.model.store.files import ModelFilesError, locate_model
from edge_agent.model.store.geometry import CacheLayer, kv_bytes_per_value, model_sizes, read_kv_geometry, sizes_at

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "models/tiny-gemma4"  # stands in for E2B
LARGE = REPO / "models/tiny-gemma4-b"  # stands in for E4B
NO_FIXED_MARGIN = HealthConfig(admission_margin_pct=25, admission_margin_mb=0)

# text_config of the released Gemma 4 E2B (shared/design/GEMMA4.md): 35 layers, 4 sliding then 1 full.
E2B_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 1536,
    "num_hidden_layers": 35,
    "num_attention_heads": 8,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "global_head_dim": 512,
    "sliding_window": 512,
    "num_kv_shared_layers": 20,
    "layer_types": ["full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(35)],
}


def write_config(tmp_path: Path, text_config: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gemma4", "text_config": text_config}))
    return path


def q4_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "onnx").glob("*_q4.onnx*"))


def test_e2b_kv_cache_for_a_4096_context(tmp_path: Path) -> None:
    geometry = read_kv_geometry(write_config(tmp_path, E2B_TEXT_CONFIG))
    # only layers 0..14 own a cache (the last 20 reuse them); of those, 4, 9 and 14 are full attention
    assert len(geometry.layers) == 15
    assert [i for i, layer in enumerate(geometry.layers) if not layer.sliding] == [4, 9, 14]
    assert geometry.layers[0] == CacheLayer(sliding=True, kv_heads=1, head_dim=256)
    assert geometry.layers[4] == CacheLayer(sliding=False, kv_heads=1, head_dim=512)
    sliding_layer = 2 * 1 * 256 * 4096 * 4  # keys and values, 1 kv head, float32: 8 MiB
    full_layer = 2 * 1 * 512 * 4096 * 4  # 16 MiB
    assert geometry.cache_bytes(4096, 4) == 12 * sliding_layer + 3 * full_layer == 144 * MIB
    # an engine that kept only the 512-position window in sliding layers would need 12 x 1 MiB + 48 MiB
    assert geometry.cache_bytes(4096, 4, trim_sliding=True) == 60 * MIB
    assert geometry.cache_bytes(4096, kv_bytes_per_value("q4f16")) == 72 * MIB
    assert geometry.cache_bytes(256, 4, trim_sliding=True) == geometry.cache_bytes(256, 4)


def test_geometry_follows_transformers_defaults_and_global_kv_heads(tmp_path: Path) -> None:
    text = {"num_hidden_layers": 12, "num_key_value_heads": 2, "head_dim": 64}
    geometry = read_kv_geometry(write_config(tmp_path, text))
    assert [layer.sliding for layer in geometry.layers] == [True] * 5 + [False] + [True] * 5 + [False]
    assert geometry.sliding_window == 512 and geometry.layers[5] == CacheLayer(False, 2, 512)
    text |= {"attention_k_eq_v": True, "num_global_key_value_heads": 1, "global_head_dim": 128}
    assert read_kv_geometry(write_config(tmp_path, text)).layers[5] == CacheLayer(False, 1, 128)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ({"num_hidden_layers": 3, "layer_types": ["sliding_attention"]}, "'layer_types' must list 3"),
        ({"num_hidden_layers": 2, "head_dim": "big"}, "'head_dim' must be a non-negative integer"),
        ({"vocab_size": 8}, "'num_hidden_layers' must be"),
    ],
)
def test_a_bad_config_is_refused_by_name(tmp_path: Path, text: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelFilesError, match=message) as info:
        read_kv_geometry(write_config(tmp_path, text))
    assert "config.json" in str(info.value)


def test_the_tiny_geometry_matches_the_cache_the_engine_really_grows() -> None:
    from edge_agent.model.runtime.engine import TextEngine

    files = locate_model(SMALL, "q4", verify=False)
    _, cache = TextEngine(files).forward(list(range(3, 23)))  # 20 positions, past the window of 8
    geometry = read_kv_geometry(SMALL / "config.json")
    assert sum(t.nbytes for t in cache.tensors.values()) == geometry.cache_bytes(20, kv_bytes_per_value("q4"))


def test_a_float16_cache_is_estimated_at_what_the_engine_grows() -> None:
    from edge_agent.model.runtime.engine import EngineOptions, TextEngine
    from edge_agent.model.runtime.graph_rewrite import Rewrites

    files = locate_model(SMALL, "q4", verify=False)
    options = EngineOptions(rewrites=Rewrites(kv_float16=True), graph_cache=None)
    _, cache = TextEngine(files, options, ()).forward(list(range(3, 23)))
    half = model_sizes(files).with_float16_cache()
    assert sum(t.nbytes for t in cache.tensors.values()) == half.kv_cache_bytes(20)
    assert half.kv_cache_bytes(4096) * 2 == model_sizes(files).kv_cache_bytes(4096)
    assert half.with_float16_cache() == half  # already half: unchanged
    full = admit(ModelConfig(path=LARGE), NO_FIXED_MARGIN, None, sizes_at).primary
    halved = admit(ModelConfig(path=LARGE, kv_cache="float16"), NO_FIXED_MARGIN, None, sizes_at).primary
    assert halved.kv_cache_bytes * 2 == full.kv_cache_bytes


def test_estimate_counts_the_variants_files_kv_cache_and_margin() -> None:
    files = locate_model(LARGE, "q4", verify=False)
    estimate = estimate_memory(model_sizes(files), 4096, margin_pct=25, margin_mb=150)
    kv = read_kv_geometry(LARGE / "config.json").cache_bytes(4096, 4)
    assert estimate.files_bytes == q4_bytes(LARGE)
    assert estimate.kv_cache_bytes == kv
    assert estimate.margin_bytes == round((q4_bytes(LARGE) + kv) * 0.25 + 150 * MIB)
    assert estimate.total_bytes == estimate.files_bytes + kv + estimate.margin_bytes  # no repack passed
    assert estimate.to_json()["total_mb"] == round(estimate.total_mb, 1)


def test_a_model_that_fits_is_loaded() -> None:
    model = ModelConfig(path=LARGE, fallback_path=SMALL)
    admission = admit(model, NO_FIXED_MARGIN, memory_available_mb=4000, sizes_at=sizes_at)
    assert admission.decision == "load" and admission.chosen == admission.primary
    assert admission.reason.startswith("tiny-gemma4-b (q4) needs ~")
    assert admission.reason.endswith("; 4000 MB available (memory available now)")


def test_a_memory_limit_picks_the_smaller_variant_when_configured() -> None:
    large = admit(ModelConfig(path=LARGE), NO_FIXED_MARGIN, None, sizes_at).primary
    small = admit(ModelConfig(path=SMALL), NO_FIXED_MARGIN, None, sizes_at).primary
    assert small.total_mb < large.total_mb
    between = (small.total_mb + large.total_mb) / 2
    admission = decide(large, small, memory_available_mb=4000, memory_limit_mb=between)
    assert admission.decision == "fallback" and admission.chosen == small
    assert "falling back to tiny-gemma4 (q4), which needs ~" in admission.reason
    assert admission.budget_mb == between


def test_a_model_that_does_not_fit_the_limit_is_refused_with_the_numbers() -> None:
    model = ModelConfig(path=LARGE, fallback_path=SMALL, memory_limit_mb=1200)
    admission = admit(model, HealthConfig(admission_margin_mb=2000), memory_available_mb=4000, sizes_at=sizes_at)
    assert admission.decision == "refuse" and admission.chosen is None
    primary, fallback = admission.primary, admission.fallback
    assert fallback is not None and primary.margin_bytes > 2000 * MIB
    # KV caches for 4096 positions, float32: 4 sliding x 1.5 MiB + 1 full x 3 MiB; 3 x 0.5 MiB + 1 x 1 MiB
    assert re.fullmatch(
        r"not loading tiny-gemma4-b \(q4\): needs ~\d+ MB \(files [\d.]+ MB( \+ INT4 repack [\d.]+ MB)? "
        r"\+ KV cache 9.00 MB \+ margin \d+ MB\); fallback tiny-gemma4 \(q4\) needs ~\d+ MB \(files [\d.]+ MB"
        r"( \+ INT4 repack [\d.]+ MB)? \+ KV cache 2.50 MB \+ margin \d+ MB\); "
        r"1200 MB available \(memory_limit_mb 1200\)",
        admission.reason,
    )
    assert f"needs ~{primary.total_mb:.0f} MB (files {primary.files_bytes / MIB:.2f} MB" in admission.reason
    published = json.loads(json.dumps(admission.to_json()))
    assert published["decision"] == "refuse" and published["budget_mb"] == 1200
    assert published["memory_available_mb"] == 4000 and published["fallback"]["path"] == str(SMALL)


def test_the_refusal_message_reads_like_the_issue_asks() -> None:
    estimate = MemoryEstimate("/models/gemma-4-E4B-it-ONNX", "q4", 4096, 1610 * MIB, 230 * MIB, 300 * MIB)
    admission = decide(estimate, None, memory_available_mb=3000.0, memory_limit_mb=1200)
    assert admission.reason == (
        "not loading gemma-4-E4B-it-ONNX (q4): needs ~2140 MB (files 1610 MB + KV cache 230 MB + margin 300 MB); "
        "1200 MB available (memory_limit_mb 1200)"
    )
    low = decide(estimate, None, memory_available_mb=950.4, memory_limit_mb=1200)
    assert low.reason.endswith("; 950 MB available (memory available now)") and low.budget_mb == 950.4


def test_without_a_fallback_or_a_reading() -> None:
    estimate = MemoryEstimate("/m/e4b", "q4", 4096, 1610 * MIB, 230 * MIB, 300 * MIB)
    assert decide(estimate, None, memory_available_mb=2000).decision == "refuse"
    unknown = decide(estimate, None, memory_available_mb=None)
    assert unknown.decision == "load" and "available memory unknown" in unknown.reason
    assert decide(estimate, None, memory_available_mb=None, memory_limit_mb=2000).decision == "refuse"


def test_fallback_config(tmp_path: Path) -> None:
    assert fallback_location(ModelConfig(path=LARGE)) is None
    assert fallback_location(ModelConfig(path=LARGE, fallback_path=SMALL)) == (SMALL, "q4")
    assert fallback_location(ModelConfig(path=LARGE, fallback_variant="q4f16")) == (LARGE, "q4f16")
    with pytest.raises(ValidationError, match="'fallback_path' is the model itself"):
        ModelConfig(path=LARGE, fallback_path=LARGE)
    with pytest.raises(ValidationError, match="'fallback_variant' is the model's own variant"):
        ModelConfig(path=LARGE, fallback_variant="q4")
    with pytest.raises(ValidationError, match="greater than or equal to 64"):
        ModelConfig(path=LARGE, memory_limit_mb=10)
    with pytest.raises(ModelFilesError, match="missing"):
        admit(ModelConfig(path=LARGE, fallback_path=tmp_path), NO_FIXED_MARGIN, 4000, sizes_at)
