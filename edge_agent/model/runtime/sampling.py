"""Logits -> next token: repetition penalty, temperature, top-k, top-p, min-p, seeded sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is picked; temperature 0 means greedy."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if not 0 <= self.min_p < 1:
            raise ValueError("min_p must be in [0, 1)")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")

    @property
    def greedy(self) -> bool:
        """True when the most likely token is always taken."""
        return self.temperature == 0.0


def apply_repetition_penalty(logits: np.ndarray, seen: Sequence[int], penalty: float) -> np.ndarray:
    """Make tokens already seen less likely (divide positive, multiply negative logits)."""
    if penalty == 1.0 or not seen:
        return logits
    out: np.ndarray = logits.copy()
    ids = np.unique(np.asarray(seen, dtype=np.int64))
    scores = out[ids]
    out[ids] = np.where(scores < 0, scores * penalty, scores / penalty)
    return out


def filter_logits(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """Temperature, then top-k, top-p and min-p: removed tokens get -inf."""
    out: np.ndarray = logits.astype(np.float64) / params.temperature
    if 0 < params.top_k < out.size:
        kth = np.partition(out, -params.top_k)[-params.top_k]
        out[out < kth] = -np.inf
    if params.top_p < 1.0 or params.min_p > 0.0:
        probs = _softmax(out)
        if params.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            drop = cumulative - probs[order] >= params.top_p  # keep the smallest set reaching top_p
            out[order[drop]] = -np.inf
        if params.min_p > 0.0:
            out[probs < params.min_p * probs.max()] = -np.inf
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - np.max(logits))
    return np.asarray(shifted / shifted.sum())


class Sampler:
    """Picks tokens with a private random generator, so a seed reproduces a run."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, seen: Sequence[int]) -> int:
        """The next token id."""
        scores = apply_repetition_penalty(logits, seen, self.params.repetition_penalty)
        if self.params.greedy:
            return int(np.argmax(scores))
        probs = _softmax(filter_logits(scores, self.params))
        return int(self._rng.choice(probs.size, p=probs))
