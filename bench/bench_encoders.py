"""Random-weight Gemma 4 vision and audio encoders at E2B's real shapes, added beside a built benchmark decoder.

Used by `bench/build_bench_model.py --encoders`. Writes onnx/{vision_encoder,audio_encoder}{,_q4}.onnx (+ .onnx_data)
into an existing benchmark model folder, adds `vision_config` / `audio_config` to its config.json and an `encoders`
entry to bench_model.json; the text graphs are not touched. Export is models/tiny_multimodal.py's (the same
wrappers and the two audio export patches), quantization models/build_tiny_gemma4.py's (MatMulNBits, block 32).

Shapes [read]: transformers 5.25 `Gemma4VisionConfig` / `Gemma4AudioConfig` defaults, which the library documents
as the google/gemma-4-e2b-it configuration, and a public test suite's E2B/E4B config (vision hidden 768, head_dim
64, 12 heads, 12 KV heads, clipped linears on, no standardize; audio all defaults):
- vision: hidden 768, 16 layers, 12 heads x 64, MLP 3072, patch 16, 3x3 pooling, 10,240 position embeddings;
- audio: conformer hidden 1024, 12 layers, 8 heads, subsampling channels 128/32, attention chunk 12 with 13 left
  context, conv kernel 5, output 1536; both projected to the text hidden size by an RMSNorm + Linear embedder.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import build_tiny_gemma4 as tiny
import numpy as np
import torch
from tiny_media_goldens import audio_inputs, image_inputs
from tiny_multimodal import export_encoders
from transformers import Gemma4AudioConfig, Gemma4TextConfig, Gemma4VisionConfig
from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel, Gemma4MultimodalEmbedder, Gemma4VisionModel

ENCODER_GRAPHS = ("vision_encoder", "audio_encoder")
VISION_E2B: dict[str, Any] = {"use_clipped_linears": True}  # all else: the library's E2B defaults (listed above)
AUDIO_E2B: dict[str, Any] = {}
CLIP_RANGE = 3.0  # finite clipping bounds, as real checkpoints carry (the defaults are +-inf)
TRACE_BUDGET = 70  # the export is traced at this budget; the graph takes every budget (dynamic patch count)


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc keeps them otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the pages stay with the process
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def spread(modules: list[torch.nn.Module], seed: int) -> None:
    """Random weights scaled by fan-in, norms near 1, finite clip bounds (as tiny_multimodal.build_model)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for name, param in sorted(module.named_parameters()):
                if param.ndim == 3 and "position" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.15)
                elif param.ndim >= 2:
                    fan_in = int(np.prod(param.shape[1:]))
                    param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
                elif "norm" in name or "scale" in name:
                    param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            for name, buffer in module.named_buffers():
                if name.endswith(("input_max", "output_max")):
                    buffer.fill_(CLIP_RANGE)
                elif name.endswith(("input_min", "output_min")):
                    buffer.fill_(-CLIP_RANGE)


def towers(text: Gemma4TextConfig, seed: int) -> tuple[Any, Gemma4VisionConfig, Gemma4AudioConfig]:
    """Both towers and their embedders, shaped as Gemma4ForConditionalGeneration holds them (model.model.*)."""
    torch.manual_seed(seed)  # parameters spread() leaves at their init (biases) are seeded too
    vision_config, audio_config = Gemma4VisionConfig(**VISION_E2B), Gemma4AudioConfig(**AUDIO_E2B)
    for config in (vision_config, audio_config):
        config._attn_implementation = "eager"  # the audio model rejects sdpa; eager exports for both
    parts = SimpleNamespace(
        vision_tower=Gemma4VisionModel(vision_config).eval(),
        embed_vision=Gemma4MultimodalEmbedder(vision_config, text).eval(),
        audio_tower=Gemma4AudioModel(audio_config).eval(),
        embed_audio=Gemma4MultimodalEmbedder(audio_config, text).eval(),
    )
    spread([parts.vision_tower, parts.embed_vision, parts.audio_tower, parts.embed_audio], seed)
    return SimpleNamespace(model=parts), vision_config, audio_config


def parameter_counts(holder: Any) -> dict[str, int]:
    """Parameters of each tower with its embedder."""
    parts = holder.model
    count = lambda *ms: sum(p.numel() for m in ms for p in m.parameters())  # noqa: E731
    return {
        "vision": count(parts.vision_tower, parts.embed_vision),
        "audio": count(parts.audio_tower, parts.embed_audio),
    }


@torch.no_grad()
def check_encoders(onnx_dir: Path, text: Gemma4TextConfig, repo: Path, seed: int) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| of the fp32 graphs on the example inputs (budgets 70 and 280; the speech clip)."""
    import onnxruntime as ort
    from tiny_multimodal import AudioWrapper, VisionWrapper

    holder, _, _ = towers(text, seed)  # the same seed: the same weights as the exported graphs
    examples = repo / "models" / "tiny-gemma4" / "examples"
    diffs: dict[str, float] = {}
    vision = ort.InferenceSession(str(onnx_dir / "vision_encoder.onnx"), providers=["CPUExecutionProvider"])
    for budget in (70, 280):
        image = image_inputs([examples / "garage.png"], budget)
        pixels, positions = image["pixel_values"].astype(np.float32), image["image_position_ids"].astype(np.int64)
        ours = vision.run(None, {"pixel_values": pixels, "pixel_position_ids": positions})[0]
        reference = VisionWrapper(holder)(torch.from_numpy(pixels), torch.from_numpy(positions)).numpy()
        diffs[f"vision_{budget}"] = float(np.abs(ours.reshape(reference.shape) - reference).max())
    del vision
    audio = audio_inputs(examples / "speech.wav")
    features, mask = audio["input_features"].astype(np.float32), audio["input_features_mask"].astype(bool)
    session = ort.InferenceSession(str(onnx_dir / "audio_encoder.onnx"), providers=["CPUExecutionProvider"])
    ours = session.run(None, {"input_features": features, "input_features_mask": mask})[0]
    reference = AudioWrapper(holder)(torch.from_numpy(features), torch.from_numpy(mask)).numpy()
    diffs["audio"] = float(np.abs(ours.reshape(reference.shape) - reference).max())
    return diffs


def add_encoders(out: Path, text: Gemma4TextConfig, repo: Path, seed: int = 11) -> dict[str, Any]:
    """Export, externalize and quantize both encoders into `out`/onnx; record them in config.json; a summary."""
    started = time.monotonic()
    onnx_dir = out / "onnx"
    for graph in ENCODER_GRAPHS:  # an earlier encoder build is replaced, the decoder's files are left alone
        for path in onnx_dir.glob(f"{graph}*.onnx*"):
            path.unlink()
    holder, vision_config, audio_config = towers(text, seed)
    params = parameter_counts(holder)
    examples = repo / "models" / "tiny-gemma4" / "examples"
    export_encoders(
        holder,  # type: ignore[arg-type]  (duck-typed: the wrappers read model.model.<tower>)
        onnx_dir,
        image_inputs([examples / "garage.png", examples / "porch.png"], TRACE_BUDGET),
        audio_inputs(examples / "speech.wav"),
    )
    del holder
    release_memory()
    for graph in ENCODER_GRAPHS:
        tiny.externalize(onnx_dir / f"{graph}.onnx")
        release_memory()
    tiny.quantize_q4(onnx_dir, ENCODER_GRAPHS)
    release_memory()
    config_path = out / "config.json"
    data = json.loads(config_path.read_text())
    data["vision_config"], data["audio_config"] = vision_config.to_dict(), audio_config.to_dict()
    config_path.write_text(json.dumps(data, indent=2) + "\n")
    check = check_encoders(onnx_dir, text, repo, seed)
    files = {p.name: p.stat().st_size for p in sorted(onnx_dir.iterdir()) if p.name.startswith(ENCODER_GRAPHS)}
    built = round(time.monotonic() - started, 1)
    return {"parameters": params, "seed": seed, "build_s": built, "max_abs_diff_vs_torch": check, "files": files}
