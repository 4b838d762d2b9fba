"""A float16 KV cache (`model.kv_cache: float16`): half the bytes, logits within the rounding's budget, and the same
ids whether a prefix comes from the cache or is prefilled afresh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.messages import ToolCall, ToolResponse, ToolSpec
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.context import Conversation
from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.graph_kv_half import half_kv_cache
from edge_agent.model.runtime.graph_rewrite import Rewrites, load_proto
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model
from edge_agent.prompt.chat import Message

MODELS = Path(__file__).resolve().parents[2] / "models"
CASES = [(name, variant) for name in ("tiny-gemma4", "tiny-gemma4-b") for variant in ("fp32", "q4")]
HALF = Rewrites(kv_float16=True)
LIGHT = ToolSpec("set_light", "Switch a light.", {"type": "object", "properties": {"room": {"type": "string"}}})
GREEDY = GenerationSettings(max_new_tokens=6, max_context=512, eos_token_ids=frozenset())


def engine(name: str, variant: str, rewrites: Rewrites, prefill_chunk: int = 512) -> TextEngine:
    options = EngineOptions(intra_op_threads=1, rewrites=rewrites, graph_cache=None, prefill_chunk=prefill_chunk)
    return TextEngine(locate_model(MODELS / name, variant), options, encoders=())


def kl(reference: np.ndarray, other: np.ndarray) -> float:
    """KL(softmax(reference) || softmax(other)) of one logits row."""
    p, q = (np.exp(x - x.max()) / np.exp(x - x.max()).sum() for x in (reference.astype(np.float64), other))
    return float(np.sum(p * (np.log(p + 1e-300) - np.log(q + 1e-300))))


def test_only_a_graph_that_appends_its_caches_is_changed() -> None:
    exported = load_proto(str(MODELS / "tiny-gemma4" / "onnx" / "decoder_model_merged.onnx"))
    assert half_kv_cache(exported) == 0  # `present` is the whole cache: nothing to keep apart
    halved = engine("tiny-gemma4", "fp32", Rewrites(grouped_attention=False, kv_float16=True))
    assert {t.dtype for t in halved.empty_cache().tensors.values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_the_cache_takes_half_the_bytes_and_the_logits_stay_within_budget(name: str, variant: str) -> None:
    full, half = engine(name, variant, Rewrites()), engine(name, variant, HALF, prefill_chunk=7)
    window = max(full.empty_cache().windows.values())
    prompt = [(7 * i + 3) % 200 + 5 for i in range(2 * window + 5)]  # past the sliding window: caches are cut
    ref, ref_cache = full.forward(prompt)
    got, cache = half.forward(prompt)
    assert {t.dtype for t in cache.tensors.values()} == {np.dtype(np.float16)}
    assert cache.nbytes * 2 == ref_cache.nbytes
    divergences, agree = [], 0
    for _ in range(3 * window):  # decode on the same tokens, well past the window
        divergences.append(kl(ref, got))
        agree += int(np.argmax(ref) == np.argmax(got))
        token = int(np.argmax(ref))
        ref, ref_cache = full.forward([token], ref_cache)
        got, cache = half.forward([token], cache)
    assert float(np.mean(divergences)) < 1e-3 and max(divergences) < 2e-2
    assert agree >= 0.95 * len(divergences)


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_reused_prefixes_and_request_steps_give_the_ids_of_a_fresh_prefill(name: str, variant: str) -> None:
    model = engine(name, variant, HALF), Tokenizer(MODELS / name)
    system = "You watch a camera of a home and answer questions about it briefly, in one sentence."
    warm = Answerer(*model)
    warm.answer(Question("Is the garage door open?", system=system, tools=(LIGHT,)), GREEDY)
    second = Question("Which lights are on in the kitchen?", system=system, tools=(LIGHT,))
    reused = warm.answer(second, GREEDY)
    cold = Answerer(*model, prefix_cache_bytes=0).answer(second, GREEDY)
    assert reused.reused_tokens > 0 and reused.ids == cold.ids
    context = Conversation()
    Answerer(*model).answer(second, GREEDY, conversation=context)
    turn = Message(
        "model",
        tool_calls=(ToolCall("set_light", {"room": "hall"}),),
        tool_responses=(ToolResponse("set_light", {"ok": True}),),
    )
    step = Question(second.text, system=system, tools=(LIGHT,), steps=(turn,))
    continued = Answerer(*model).answer(step, GREEDY, conversation=context)
    assert continued.reused_tokens > 0
    assert continued.ids == Answerer(*model, prefix_cache_bytes=0).answer(step, GREEDY).ids
