"""Add q4 goldens from transformers.js (the public reference client) to a tiny model's goldens.json.

Random tiny models have top-1/top-2 logit gaps too small for q4-vs-fp32 agreement to mean anything, so
the q4 reference is the reference client on the same `_q4` files and the same onnxruntime kernels. Also
checks that transformers.js' fp32 ids equal the PyTorch goldens; multimodal cases run transformers.js'
Gemma4ForConditionalGeneration (all four graphs) on inputs preprocessed by edge_agent. Needs Node and
`ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix models/.node @huggingface/transformers@4.3.1`.
Usage: python models/js_goldens.py models/tiny-gemma4
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.model.media.audio import audio_features, load_audio
from edge_agent.model.media.vision import load_image, preprocess_image, stack_images
from edge_agent.model.store.files import write_manifest

SCRIPT = Path(__file__).resolve().parent / "transformers_js_generate.mjs"
MULTIMODAL_SCRIPT = Path(__file__).resolve().parent / "transformers_js_multimodal.mjs"


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


def write_tensors(model: Path, case: dict[str, Any], target: Path) -> None:
    """The case's inputs for transformers.js, preprocessed by edge_agent (equal to transformers' processors)."""
    tensors: dict[str, dict[str, Any]] = {}

    def put(name: str, array: np.ndarray, dtype: str) -> None:
        numpy_type = {"float32": np.float32, "int64": np.int64, "bool": np.uint8}[dtype]
        (target / f"{name}.bin").write_bytes(np.ascontiguousarray(array, dtype=numpy_type).tobytes())
        tensors[name] = {"dtype": dtype, "dims": list(array.shape), "file": f"{name}.bin"}

    if case["images"]:
        images = [preprocess_image(load_image(model / p), case["image_budget"]) for p in case["images"]]
        pixels, positions = stack_images(images)
        put("pixel_values", pixels, "float32")
        put("image_position_ids", positions, "int64")
    if case["audio"]:
        clip = audio_features(load_audio(model / case["audio"]))
        put("input_features", clip.features[None], "float32")
        put("input_features_mask", clip.mask[None], "bool")
    (target / "inputs.json").write_text(json.dumps({"input_ids": case["prompt_ids"], "tensors": tensors}))


def js_multimodal_greedy(model: Path, variant: str, case: dict[str, Any]) -> list[int]:
    """Greedy ids from transformers.js' Gemma4ForConditionalGeneration for one multimodal case."""
    with tempfile.TemporaryDirectory() as tmp:
        write_tensors(model, case, Path(tmp))
        out = subprocess.run(
            ["node", str(MULTIMODAL_SCRIPT), str(model), variant, tmp, str(len(case["greedy_ids"]))],
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
    for case in goldens.get("multimodal", []):
        fp32 = js_multimodal_greedy(model, "fp32", case)
        if fp32 != case["greedy_ids"]:
            print(f"{model.name}: transformers.js fp32 ids differ from PyTorch's for {case['name']}: {fp32}")
            return 1
        case["q4_greedy_ids"] = js_multimodal_greedy(model, "q4", case)
    path.write_text(json.dumps(goldens) + "\n")
    write_manifest(model, name=model.name)
    print(f"{model.name}: transformers.js fp32 ids equal PyTorch's; q4 goldens written")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
