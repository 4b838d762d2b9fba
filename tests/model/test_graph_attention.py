"""Grouped attention (no repeat_kv copy) and masks that follow their keys, so sliding layers hold only their window:
the same logits as the exported graph, on every fixture, over contexts many windows long."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge_agent.model.runtime.context import Conversation, PrefixCache
from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.graph_attention import group_query_heads, slice_masks_to_keys
from edge_agent.model.runtime.graph_fusion import fuse_elementwise
from edge_agent.model.runtime.graph_rewrite import Rewrites, load_proto
from edge_agent.model.runtime.graph_split import split_kv_appends
from edge_agent.model.runtime.kv_cache import REWIND_MARGIN
from edge_agent.model.store.files import locate_model

MODELS = Path(__file__).resolve().parents[2] / "models"
CASES = [(name, variant) for name in ("tiny-gemma4", "tiny-gemma4-b") for variant in ("fp32", "q4")]
AS_EXPORTED = Rewrites(grouped_attention=False)


def engine(name: str, variant: str, rewrites: Rewrites, prefill_chunk: int = 512) -> TextEngine:
    options = EngineOptions(intra_op_threads=1, rewrites=rewrites, graph_cache=None, prefill_chunk=prefill_chunk)
    return TextEngine(locate_model(MODELS / name, variant), options, encoders=())


def test_every_attention_product_and_mask_is_rewritten() -> None:
    """Each layer's scores and values read the cache itself, and each layer's mask is cut to its keys."""
    model = load_proto(str(MODELS / "tiny-gemma4" / "onnx" / "decoder_model_merged.onnx"))
    expands = sum(node.op_type == "Expand" for node in model.graph.node)
    layers = 6
    assert group_query_heads(model) == 2 * layers
    assert slice_masks_to_keys(model) == layers
    assert sum(node.op_type == "Expand" for node in model.graph.node) == expands - 2 * layers
    assert group_query_heads(model) == 0  # idempotent: nothing left to rewrite
    caches = sum(output.name.startswith("present.") for output in model.graph.output)
    assert split_kv_appends(model) == caches  # every cache is appended to, never joined in the graph
    assert not any(node.op_type == "Concat" and node.output[0].startswith("present.") for node in model.graph.node)


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_trimmed_sliding_caches_give_the_exported_logits(name: str, variant: str) -> None:
    """Prefill then greedy decode well past the window and margin: the same ids, logits within float noise, and
    the sliding caches were cut."""
    reference, rewritten = engine(name, variant, AS_EXPORTED), engine(name, variant, Rewrites())
    assert rewritten.empty_cache().windows, "no sliding layer may be trimmed: the rewrite did not apply"
    window = next(iter(rewritten.empty_cache().windows.values()))
    prompt = [(7 * i + 3) % 200 + 5 for i in range(2 * window + 3)]
    ref_logits, ref_cache = reference.forward(prompt)
    new_logits, new_cache = rewritten.forward(prompt)
    trimmed = 0
    for _ in range(REWIND_MARGIN + 6 * window):
        np.testing.assert_allclose(new_logits, ref_logits, atol=2e-4, rtol=1e-4)
        token = int(np.argmax(ref_logits))
        assert int(np.argmax(new_logits)) == token
        ref_logits, ref_cache = reference.forward([token], ref_cache)
        new_logits, new_cache = rewritten.forward([token], new_cache)
        trimmed = max(trimmed, *(new_cache.dropped(n) for n in new_cache.windows))
    assert trimmed > 0
    assert all(new_cache.tensors[n].shape[2] <= REWIND_MARGIN + window * 3 // 2 + 1 for n in new_cache.windows)
    assert new_cache.length == ref_cache.length


def test_a_trimmed_cache_is_cut_only_where_every_window_is_still_held() -> None:
    """Truncating below what a sliding layer still holds is refused; the request then prefills again."""
    model = engine("tiny-gemma4", "fp32", Rewrites())
    window = next(iter(model.empty_cache().windows.values()))
    prompt = list(range(5, 5 + window))
    _, cache = model.forward(prompt)
    for token in range(REWIND_MARGIN + 4 * window):
        _, cache = model.forward([token % 50 + 5], cache)
    oldest = min(cache.length - cache.tensors[n].shape[2] for n in cache.windows)
    assert not cache.can_truncate(1) and cache.can_truncate(cache.length)
    with pytest.raises(ValueError, match="cannot keep"):
        cache.truncated(1)
    kept = cache.truncated(cache.length - 1)
    assert kept.length == cache.length - 1 and oldest <= kept.length
    conversation = Conversation(ids=prompt + [0] * (cache.length - len(prompt)), cache=cache)
    assert conversation.start_for([*prompt, 999]) is None  # the whole prompt is no longer held
    _, prompt_cache = model.forward(prompt)
    conversation.remember(conversation.ids, cache, prompt_cache)  # what an answer keeps: the prompt's own cache
    restart = conversation.start_for([*prompt, 999])
    assert restart is not None and restart.length == len(prompt)
    prefixes = PrefixCache(1 << 30)
    prefixes.store(list(range(cache.length)), cache.truncated(cache.length))
    assert prefixes.longest(list(range(cache.length)), 16) is None  # stored, but its first 16 are gone


def test_without_the_rewrite_nothing_is_trimmed(caplog: pytest.LogCaptureFixture) -> None:
    """A graph whose masks do not follow their keys keeps every position of every layer."""
    caplog.set_level(logging.DEBUG)
    model = engine("tiny-gemma4-b", "fp32", AS_EXPORTED)
    assert model.empty_cache().windows == {}
    _, cache = model.forward(list(range(5, 60)))
    for token in range(30):
        _, cache = model.forward([token + 5], cache)
    assert all(tensor.shape[2] == cache.length for tensor in cache.tensors.values())


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_a_prompt_prefilled_in_chunks_gives_the_whole_prompt_logits(name: str, variant: str) -> None:
    """A long prompt fed 7 positions at a time: the same last logits and the same cache as in one run."""
    whole, chunked = engine(name, variant, Rewrites(), prefill_chunk=0), engine(name, variant, Rewrites(), 7)
    prompt = [(5 * i + 1) % 200 + 5 for i in range(40)]
    logits, cache = whole.forward(prompt)
    chunked.positions_run = 0
    chunk_logits, chunk_cache = chunked.forward(prompt)
    assert chunked.positions_run == len(prompt) and chunk_cache.length == cache.length
    np.testing.assert_allclose(chunk_logits, logits, atol=2e-4, rtol=1e-4)
    for name_, tensor in cache.tensors.items():
        np.testing.assert_allclose(chunk_cache.tensors[name_], tensor, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_fused_norms_and_gelus_keep_the_greedy_ids(name: str, variant: str) -> None:
    """Every RMSNorm and tanh GELU fused: the ids of the exported chains over 30 steps, logits within 1e-3."""
    model = load_proto(str(MODELS / name / "onnx" / f"decoder_model_merged{'_q4' if variant == 'q4' else ''}.onnx"))
    reduces = sum(node.op_type == "ReduceMean" for node in model.graph.node)
    tanhs = sum(node.op_type == "Tanh" for node in model.graph.node)
    norms, gelus = fuse_elementwise(model)
    assert norms == reduces and gelus == tanhs - 1  # the one Tanh left is the final logit softcapping
    exported, fused = engine(name, variant, Rewrites(fused_ops=False)), engine(name, variant, Rewrites())
    logits, cache = exported.forward(list(range(5, 45)))
    fused_logits, fused_cache = fused.forward(list(range(5, 45)))
    for _ in range(30):
        np.testing.assert_allclose(fused_logits, logits, atol=1e-3)
        token = int(np.argmax(logits))
        assert int(np.argmax(fused_logits)) == token
        logits, cache = exported.forward([token], cache)
        fused_logits, fused_cache = fused.forward([token], fused_cache)
