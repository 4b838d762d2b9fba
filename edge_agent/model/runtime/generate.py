"""The decode loop: prefill, step with the KV cache, sample, stream text, stop for a reason."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from edge_agent.model.runtime.sampling import Sampler, SamplingParams

FinishReason = Literal["eos", "stop", "length", "context", "cancelled", "deadline", "constraint"]


class CausalLM(Protocol):
    """A model that turns new token ids (after an opaque cache) into last-position logits."""

    def forward(self, input_ids: Sequence[int], cache: Any = None) -> tuple[np.ndarray, Any]:
        """Logits of the last position and the grown cache."""
        ...


class TextDecoder(Protocol):
    """Streaming detokeniser: token ids in, complete UTF-8 text out."""

    def add(self, token_id: int) -> str:
        """Text that became complete with this token (may be empty)."""
        ...

    def flush(self) -> str:
        """What is still held back at the end (an incomplete character becomes U+FFFD)."""
        ...


class TokenConstraint(Protocol):
    """Restricts which tokens may come next (a grammar); one instance per generation."""

    def allowed(self) -> np.ndarray | None:
        """Boolean mask over token ids allowed next (may be shorter than the logits), or None for any token."""
        ...

    def advance(self, token_id: int) -> None:
        """Consume the token that was picked."""
        ...

    def finished(self) -> bool:
        """True when the grammar is complete and generation must stop."""
        ...


class ContextLengthError(ValueError):
    """The prompt does not fit the context window."""


@dataclass(frozen=True)
class GenerationSettings:
    """Limits and stop conditions of one generation."""

    max_new_tokens: int = 256
    max_context: int = 4096
    eos_token_ids: frozenset[int] = frozenset()
    stop_strings: tuple[str, ...] = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)
    deadline: float | None = None  # time.monotonic() value after which generation stops
    cancel: threading.Event | None = None
    constraint: TokenConstraint | None = None  # masks logits before sampling (structured output)


@dataclass(frozen=True)
class TokenStep:
    """One generated token and the text it completed."""

    token_id: int
    text: str


@dataclass
class GenerationResult:
    """What a generation produced and how fast."""

    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: FinishReason = "length"
    prefill_s: float = 0.0
    decode_s: float = 0.0
    ttft_s: float = 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        """Prompt tokens processed per second."""
        return len(self.prompt_ids) / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """New tokens per second after the first."""
        return (len(self.ids) - 1) / self.decode_s if self.decode_s and len(self.ids) > 1 else 0.0


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest


class Generation:
    """Iterate to stream TokenSteps; `result` is complete once iteration ends."""

    def __init__(
        self, model: CausalLM, prompt_ids: Sequence[int], settings: GenerationSettings, decoder: TextDecoder
    ) -> None:
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if len(prompt_ids) >= settings.max_context:
            raise ContextLengthError(
                f"the prompt is {len(prompt_ids)} tokens; the context holds {settings.max_context} "
                "(raise model.max_context or shorten the prompt)"
            )
        self.model, self.settings, self.decoder = model, settings, decoder
        self.result = GenerationResult(prompt_ids=list(prompt_ids))
        self._sampler = Sampler(settings.sampling)
        self.cache: Any = None  # the model's cache after its last call (prompt and every token fed back)
        self.prompt_cache: Any = None  # the model's cache right after the prompt (before any new token)

    def _interrupted(self) -> FinishReason | None:
        if self.settings.cancel is not None and self.settings.cancel.is_set():
            return "cancelled"
        if self.settings.deadline is not None and time.monotonic() >= self.settings.deadline:
            return "deadline"
        return None

    def _stop_after_step(self, constraint_finished: bool) -> FinishReason | None:
        result, settings = self.result, self.settings
        if constraint_finished:
            return "constraint"
        if len(result.ids) >= settings.max_new_tokens:
            return "length"
        if len(result.prompt_ids) + len(result.ids) >= settings.max_context:
            return "context"
        return self._interrupted()

    def __iter__(self) -> Iterator[TokenStep]:
        """Run the loop, yielding each token with the text it made visible."""
        result, settings = self.result, self.settings
        started = time.monotonic()
        if reason := self._interrupted():
            result.finish_reason = reason
            return
        logits, cache = self.model.forward(result.prompt_ids)
        self.cache = self.prompt_cache = cache
        result.prefill_s = time.monotonic() - started
        pending = ""  # text held back because it may begin a stop string
        decode_start = time.monotonic()
        constraint = settings.constraint
        while True:
            if constraint is not None:
                logits = _masked(logits, constraint.allowed())
            token = self._sampler(logits, result.prompt_ids + result.ids)
            if constraint is not None:
                constraint.advance(token)
            if not result.ids:
                result.ttft_s = time.monotonic() - started
                decode_start = time.monotonic()
            result.ids.append(token)
            if token in settings.eos_token_ids:
                result.finish_reason = "eos"
                break
            finished = constraint is not None and constraint.finished()
            pending += self.decoder.add(token)
            hit = min((i for i in (pending.find(s) for s in settings.stop_strings) if i >= 0), default=-1)
            if hit >= 0:
                result.text += pending[:hit]
                yield TokenStep(token, pending[:hit])
                pending = ""
                result.finish_reason = "stop"
                break
            keep = _held_back(pending, settings.stop_strings)
            visible, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            result.text += visible
            yield TokenStep(token, visible)
            if reason := self._stop_after_step(finished):
                result.finish_reason = reason
                break
            logits, cache = self.model.forward([token], cache)
            self.cache = cache
        if result.finish_reason != "stop":  # the text held back for stop strings, and bytes of a cut character
            tail = pending + self.decoder.flush()
            if tail:
                result.text += tail
                yield TokenStep(result.ids[-1], tail)
        result.decode_s = time.monotonic() - decode_start


def _masked(logits: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """Logits with every token the constraint forbids set to -inf (ids past the mask are forbidden)."""
    if allowed is None:
        return logits
    size = min(allowed.size, logits.size)
    ok = allowed[:size]
    count = int(np.count_nonzero(ok))
    if count == 0:
        raise RuntimeError("the output constraint allows no token (grammar and vocabulary disagree)")
    if count < size // 8:  # few tokens allowed (a keyword, a number): copy just those
        few = np.full(logits.shape, -np.inf, dtype=logits.dtype)
        keep = np.flatnonzero(ok)
        few[keep] = logits[keep]
        return few
    most: np.ndarray = logits.copy()  # most tokens allowed (inside a string): blank the rest (bench/constrained.py)
    most[:size][~ok] = -np.inf
    most[size:] = -np.inf
    return most


def generate(
    model: CausalLM,
    prompt_ids: Sequence[int],
    settings: GenerationSettings,
    decoder: TextDecoder,
    on_text: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Run a generation to the end, calling `on_text` with each piece of visible text."""
    generation = Generation(model, prompt_ids, settings, decoder)
    for step in generation:
        if on_text is not None and step.text:
            on_text(step.text)
    return generation.result
