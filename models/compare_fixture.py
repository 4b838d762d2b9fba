"""Check that a rebuilt tiny model behaves exactly like the committed one (goldens and graph outputs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.store.files import locate_model


def outputs(root: Path, variant: str, prompt: list[int]) -> tuple[np.ndarray, list[int]]:
    """Last logits of the prompt and 8 greedy ids."""
    engine = TextEngine(locate_model(root, variant, verify=False))
    logits, cache = engine.forward(prompt)
    first, ids = logits, []
    for _ in range(8):
        ids.append(int(np.argmax(logits)))
        logits, cache = engine.forward([ids[-1]], cache)
    return first, ids


def main(committed: Path, rebuilt: Path) -> int:
    """Exit 0 when both agree."""
    old, new = (json.loads((p / "goldens.json").read_text()) for p in (committed, rebuilt))
    problems = [] if old == new else ["goldens.json differs"]
    for variant in ("fp32", "q4"):
        for case in old["cases"]:
            (a, ids_a), (b, ids_b) = (outputs(p, variant, case["prompt_ids"]) for p in (committed, rebuilt))
            if ids_a != ids_b or not np.allclose(a, b, atol=1e-6):
                problems.append(f"{variant}: outputs differ for prompt {case['prompt_ids'][:5]}...")
    for problem in problems:
        print(f"{rebuilt}: {problem}")
    print(f"{committed.name}: {'rebuilt identically' if not problems else 'DIFFERS'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
