"""The decode loop on a scripted model: stop reasons, streaming, stop strings, cancel, deadline, context."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from edge_agent.model.runtime.generate import ContextLengthError, Generation, GenerationSettings, generate

VOCAB = ["<eos>", "a", "b", "c", "STOP", "é1", "é2"]


class ScriptedModel:
    """Logits that make a fixed continuation the argmax; records how it was called."""

    def __init__(self, script: Sequence[int], delay_s: float = 0.0) -> None:
        self.script = list(script)
        self.calls: list[tuple[list[int], int]] = []
        self.delay_s = delay_s

    def forward(self, input_ids: Sequence[int], cache: Any = None) -> tuple[np.ndarray, Any]:
        position = (cache or 0) + len(input_ids)
        self.calls.append((list(input_ids), cache or 0))
        time.sleep(self.delay_s)
        logits = np.zeros(len(VOCAB), dtype=np.float32)
        step = position - self.prompt_len
        logits[self.script[min(step, len(self.script) - 1)]] = 5.0
        return logits, position

    prompt_len = 0


class Chars:
    """A detokeniser where 'é1' + 'é2' together make one character (like byte-fallback tokens)."""

    def __init__(self) -> None:
        self.half = False

    def add(self, token_id: int) -> str:
        piece = VOCAB[token_id]
        if piece == "é1":
            self.half = True
            return ""
        if piece == "é2" and self.half:
            self.half = False
            return "é"
        return piece

    def flush(self) -> str:
        """A character cut in half at the end becomes U+FFFD, as the real decoder's flush does."""
        held, self.half = self.half, False
        return "\ufffd" if held else ""


def run(script: Sequence[int], prompt: Sequence[int] = (1, 2), **settings: Any) -> Any:
    model = ScriptedModel(script)
    model.prompt_len = len(prompt)
    streamed: list[str] = []
    result = generate(model, prompt, GenerationSettings(**settings), Chars(), on_text=streamed.append)
    return result, streamed, model


def test_stops_on_eos_without_emitting_it() -> None:
    result, streamed, model = run([1, 2, 0, 3], eos_token_ids=frozenset({0}))
    assert result.ids == [1, 2, 0] and result.text == "ab" and result.finish_reason == "eos"
    assert streamed == ["a", "b"]
    assert model.calls == [([1, 2], 0), ([1], 2), ([2], 3)]  # prefill once, then one token per step


def test_stops_at_max_new_tokens() -> None:
    result, _, _ = run([1], max_new_tokens=4)
    assert result.ids == [1, 1, 1, 1] and result.finish_reason == "length"


def test_stop_string_is_cut_and_never_streamed() -> None:
    result, streamed, _ = run([1, 2, 4, 3], stop_strings=("bSTOP",))
    assert result.finish_reason == "stop" and result.text == "a"
    assert "".join(streamed) == "a" and all("b" not in s for s in streamed)


def test_text_that_only_looks_like_a_stop_string_is_released() -> None:
    result, streamed, _ = run([2, 1, 3], max_new_tokens=3, stop_strings=("bc",))
    assert result.text == "bac" and "".join(streamed) == "bac"


def test_split_characters_are_emitted_whole() -> None:
    result, streamed, _ = run([5, 6, 1], max_new_tokens=3)
    assert streamed == ["é", "a"] and result.text == "éa"


def test_context_guard() -> None:
    with pytest.raises(ContextLengthError, match="the prompt is 4 tokens; the context holds 4"):
        Generation(ScriptedModel([1]), [1, 2, 3, 1], GenerationSettings(max_context=4), Chars())
    result, _, _ = run([1], prompt=(1, 2, 3), max_context=6, max_new_tokens=10)
    assert len(result.ids) == 3 and result.finish_reason == "context"


def test_cancel_from_another_thread() -> None:
    cancel = threading.Event()
    model = ScriptedModel([1], delay_s=0.01)
    model.prompt_len = 1
    settings = GenerationSettings(max_new_tokens=10_000, cancel=cancel)
    threading.Timer(0.1, cancel.set).start()
    result = generate(model, [1], settings, Chars())
    assert result.finish_reason == "cancelled" and 0 < len(result.ids) < 10_000


def test_deadline() -> None:
    model = ScriptedModel([1], delay_s=0.01)
    model.prompt_len = 1
    settings = GenerationSettings(max_new_tokens=10_000, deadline=time.monotonic() + 0.1)
    result = generate(model, [1], settings, Chars())
    assert result.finish_reason == "deadline" and 0 < len(result.ids) < 10_000


def test_timings_are_reported() -> None:
    result, _, _ = run([1], max_new_tokens=5)
    assert result.prefill_s >= 0 and result.ttft_s >= result.prefill_s
    assert result.decode_tokens_per_s > 0 and result.prefill_tokens_per_s > 0


class OnlyTokens:
    """A constraint allowing a fixed sequence of token sets, finished after the last."""

    def __init__(self, steps: Sequence[set[int]], vocab: int = len(VOCAB)) -> None:
        self.steps, self.vocab, self.taken = list(steps), vocab, []

    def allowed(self) -> np.ndarray | None:
        mask = np.zeros(self.vocab, dtype=bool)
        mask[list(self.steps[len(self.taken)])] = True
        return mask

    def advance(self, token_id: int) -> None:
        assert token_id in self.steps[len(self.taken)], "the sampler picked a forbidden token"
        self.taken.append(token_id)

    def finished(self) -> bool:
        return len(self.taken) == len(self.steps)


def test_a_constraint_overrides_the_model_and_ends_the_generation() -> None:
    constraint = OnlyTokens([{2}, {2, 3}, {3}])  # the model wants 'a' every time
    result, streamed, _ = run([1, 1, 1, 1, 1], constraint=constraint, max_new_tokens=10)
    assert result.text == "bbc" and "".join(streamed) == "bbc"
    assert result.finish_reason == "constraint"
    assert constraint.taken == [2, 2, 3]


def test_a_constraint_that_allows_nothing_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="allows no token"):
        run([1, 1], constraint=OnlyTokens([set()]))


def test_sampling_under_a_constraint_never_picks_a_forbidden_token() -> None:
    from edge_agent.model.runtime.sampling import SamplingParams

    for seed in range(20):
        constraint = OnlyTokens([{1, 3}] * 6)
        result, _, _ = run([2] * 8, constraint=constraint, sampling=SamplingParams(temperature=2.0, seed=seed))
        assert set(result.ids) <= {1, 3} and result.finish_reason == "constraint"


def test_a_character_cut_by_the_length_limit_is_flushed_and_streamed() -> None:
    result, streamed, _ = run([1, 5], max_new_tokens=2)
    assert result.text == "a\ufffd" and "".join(streamed) == result.text


def test_text_held_back_for_a_stop_string_is_streamed_when_the_answer_ends() -> None:
    result, streamed, _ = run([1, 2, 0], eos_token_ids=frozenset({0}), stop_strings=("bc",))
    assert result.text == "ab" and "".join(streamed) == "ab" and result.finish_reason == "eos"
