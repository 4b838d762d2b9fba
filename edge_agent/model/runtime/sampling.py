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


def candidates(logits: np.ndarray, params: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """Temperature, then top-k, top-p and min-p: the surviving ids (ascending) and their scaled scores.

    Top-k picks its k candidates with one partition over the vocabulary; everything after it works on those
    k only. Ids stay in ascending order, so a seeded draw picks what a draw over the whole vocabulary would."""
    if 0 < params.top_k < logits.size:
        ids = np.sort(np.argpartition(logits, -params.top_k)[-params.top_k :])
    else:
        ids = np.arange(logits.size)
    scores = logits[ids].astype(np.float64) / params.temperature
    if params.top_p < 1.0 or params.min_p > 0.0:
        probs = _softmax(scores)
        keep = np.ones(ids.size, dtype=bool)
        if params.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            ranked = probs[order]
            keep[order[np.cumsum(ranked) - ranked >= params.top_p]] = False  # the smallest set reaching top_p
        if params.min_p > 0.0:
            keep &= probs >= params.min_p * probs.max()
        ids, scores = ids[keep], scores[keep]
    return ids, scores


def filter_logits(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """The scaled logits with every token the filters remove set to -inf (for inspection and tests)."""
    ids, scores = candidates(logits, params)
    out = np.full(logits.size, -np.inf)
    out[ids] = scores
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
        ids, kept = candidates(scores, self.params)
        return int(ids[self._rng.choice(ids.size, p=_softmax(kept))])
