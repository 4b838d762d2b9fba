"""Add q4 goldens from transformers.js (the public reference client) to a tiny model's goldens.json.

Random tiny models have top-1/top-2 logit gaps too small for q4-vs-fp32 agreement to mean anything, so
the q4 reference is the reference client on the same `_q4` files and the same onnxruntime kernels. Also
checks that transformers.js' fp32 ids equal the PyTorch goldens. Needs Node and
`ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix models/.node @huggingface/transformers@4.3.1`.
Usage: python models/js_goldens.py models/tiny-gemma4
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_agent.model.files import write_manifest

SCRIPT = Path(__file__).resolve().parent / "transformers_js_generate.mjs"


def js_greedy(model: Path, variant: str, prompt: list[int], count: int) -> list[int]:
    """Greedy ids from transformers.js."""
    out = subprocess.run(
        ["node", str(SCRIPT), str(model), variant, json.dumps(prompt), str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return list(json.loads(out.strip().splitlines()[-1])["ids"])


def main(model: Path) -> int:
    """Write q4_greedy_ids into every case; fail if transformers.js' fp32 ids differ from PyTorch's."""
    path = model / "goldens.json"
    goldens = json.loads(path.read_text())
    for case in goldens["cases"]:
        count = len(case["greedy_ids"])
        fp32 = js_greedy(model, "fp32", case["prompt_ids"], count)
        if fp32 != case["greedy_ids"]:
            print(f"{model.name}: transformers.js fp32 ids differ from PyTorch's: {fp32} vs {case['greedy_ids']}")
            return 1
        case["q4_greedy_ids"] = js_greedy(model, "q4", case["prompt_ids"], count)
    path.write_text(json.dumps(goldens) + "\n")
    write_manifest(model, name=model.name)
    print(f"{model.name}: transformers.js fp32 ids equal PyTorch's; q4 goldens written")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
