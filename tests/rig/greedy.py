"""Greedy ids straight through an engine's forward passes (no decode loop), for comparing engines and graphs."""

from __future__ import annotations

import numpy as np

from edge_agent.model.runtime.engine import TextEngine


def greedy(engine: TextEngine, prompt: list[int], steps: int) -> list[int]:
    """The argmax token at each of `steps` steps after `prompt`."""
    logits, cache = engine.forward(prompt)
    ids = []
    for _ in range(steps):
        ids.append(int(np.argmax(logits)))
        logits, cache = engine.forward([ids[-1]], cache)
    return ids
