"""Tiny Gemma 4 vision and audio encoders on top of a tiny text model: build, export, and multimodal goldens.

Used by build_tiny_gemma4.py for presets with `multimodal: True`. The text weights are copied unchanged from the
Gemma4ForCausalLM the text goldens come from, so the text graphs stay identical. Needs the `export` extra.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soxr
import torch
from PIL import Image
from transformers import (
    Gemma4AudioConfig,
    Gemma4Config,
    Gemma4ForCausalLM,
    Gemma4ForConditionalGeneration,
    Gemma4TextConfig,
    Gemma4VisionConfig,
    masking_utils,
)
from transformers.models.gemma4 import modeling_gemma4
from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "position_embedding_size": 256,
}
AUDIO = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "subsampling_conv_channels": [128, 8],  # the first must stay 128: the projection assumes 128 // 4 mel bins
    "output_proj_dims": 48,
}
IMAGE_BUDGET = 70
SPEECH = "Turn on the garage light."


def multimodal_config(text: Gemma4TextConfig, tokens: dict[str, int]) -> Gemma4Config:
    """A Gemma4Config with tiny vision and audio towers and the tokenizer's media token ids."""
    return Gemma4Config(
        text_config=copy.deepcopy(text).to_dict(),
        vision_config=Gemma4VisionConfig(**VISION).to_dict(),
        audio_config=Gemma4AudioConfig(**AUDIO).to_dict(),
        image_token_id=tokens["<|image|>"],
        audio_token_id=tokens["<|audio|>"],
        video_token_id=tokens["<|video|>"],
        boi_token_id=tokens["<|image>"],
        eoi_token_id=tokens["<image|>"],
        boa_token_id=tokens["<|audio>"],
        eoa_token_id=tokens["<audio|>"],
        tie_word_embeddings=True,
    )


def build_model(causal: Gemma4ForCausalLM, config: Gemma4Config, seed: int) -> Gemma4ForConditionalGeneration:
    """The conditional-generation model: `causal`'s text weights, random encoder weights spread like the text's."""
    config._attn_implementation = "eager"
    for sub in (config.text_config, config.vision_config, config.audio_config):
        sub._attn_implementation = "eager"
    model = Gemma4ForConditionalGeneration(config).eval()
    model.model.language_model.load_state_dict(causal.model.state_dict())
    model.lm_head.weight = model.model.language_model.embed_tokens.weight
    generator = torch.Generator().manual_seed(seed)
    towers = (model.model.vision_tower, model.model.audio_tower, model.model.embed_vision, model.model.embed_audio)
    with torch.no_grad():
        for tower in towers:
            for name, param in sorted(tower.named_parameters()):
                if param.ndim == 3 and "position" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.15)
                elif param.ndim >= 2:
                    fan_in = int(np.prod(param.shape[1:]))
                    param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
                elif "norm" in name or "scale" in name:
                    param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            for name, buffer in tower.named_buffers():
                # Real checkpoints carry finite clipping ranges; exercise the clamps.
                if name.endswith(("input_max", "output_max")):
                    buffer.fill_(3.0)
                elif name.endswith(("input_min", "output_min")):
                    buffer.fill_(-3.0)
    return model


class VisionWrapper(torch.nn.Module):
    """pixel_values, pixel_position_ids -> image_features: the valid soft tokens of all images, projected."""

    def __init__(self, model: Gemma4ForConditionalGeneration) -> None:
        super().__init__()
        self.tower, self.embed = model.model.vision_tower, model.model.embed_vision

    def forward(self, pixel_values: torch.Tensor, pixel_position_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.tower(pixel_values=pixel_values, pixel_position_ids=pixel_position_ids).last_hidden_state
        return self.embed(inputs_embeds=hidden)


class AudioWrapper(torch.nn.Module):
    """input_features, input_features_mask -> audio_features: the valid soft tokens, projected."""

    def __init__(self, model: Gemma4ForConditionalGeneration) -> None:
        super().__init__()
        self.tower, self.embed = model.model.audio_tower, model.model.embed_audio

    def forward(self, input_features: torch.Tensor, input_features_mask: torch.Tensor) -> torch.Tensor:
        out = self.tower(input_features, input_features_mask, return_dict=True)
        return self.embed(inputs_embeds=out.last_hidden_state)[out.attention_mask]


def _block_context_by_gather(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    """`_extract_block_context` without Tensor.unfold (no ONNX symbolic): the same windows by index."""
    padded = torch.nn.functional.pad(
        hidden_states, (0, 0, 0, 0, self.max_past_horizon, self.max_future_horizon + self.chunk_size - 1)
    )
    num_blocks = (hidden_states.shape[1] + self.chunk_size - 1) // self.chunk_size
    starts = torch.arange(num_blocks) * self.chunk_size
    index = starts[:, None] + torch.arange(self.context_size)[None, :]
    return padded[:, index]


@contextlib.contextmanager
def audio_export_patches() -> Iterator[None]:
    """Two export-only changes that leave PyTorch's output identical: no vmap mask, no unfold."""
    interface = masking_utils.ALL_MASK_ATTENTION_FUNCTIONS
    eager = interface["eager"]

    def eager_without_vmap(*args: Any, **kwargs: Any) -> Any:
        kwargs["use_vmap"] = False
        return eager(*args, **kwargs)

    original = modeling_gemma4.Gemma4AudioAttention._extract_block_context
    interface["eager"] = eager_without_vmap
    modeling_gemma4.Gemma4AudioAttention._extract_block_context = _block_context_by_gather  # type: ignore[method-assign]
    try:
        yield
    finally:
        interface["eager"] = eager
        modeling_gemma4.Gemma4AudioAttention._extract_block_context = original  # type: ignore[method-assign]


def export_encoders(
    model: Gemma4ForConditionalGeneration, onnx_dir: Path, image: dict[str, np.ndarray], audio: dict[str, np.ndarray]
) -> None:
    """Export vision_encoder.onnx and audio_encoder.onnx (fp32) from example processor outputs."""
    pixels = torch.from_numpy(image["pixel_values"]).float()
    positions = torch.from_numpy(image["image_position_ids"]).long()
    torch.onnx.export(
        VisionWrapper(model),
        (pixels, positions),
        str(onnx_dir / "vision_encoder.onnx"),
        input_names=["pixel_values", "pixel_position_ids"],
        output_names=["image_features"],
        dynamic_axes={
            "pixel_values": {0: "num_images", 1: "num_patches"},
            "pixel_position_ids": {0: "num_images", 1: "num_patches"},
            "image_features": {0: "num_image_tokens"},
        },
        opset_version=18,
        dynamo=False,
    )
    features = torch.from_numpy(audio["input_features"]).float()
    mask = torch.from_numpy(audio["input_features_mask"]).bool()
    with audio_export_patches():
        torch.onnx.export(
            AudioWrapper(model),
            (features, mask),
            str(onnx_dir / "audio_encoder.onnx"),
            input_names=["input_features", "input_features_mask"],
            output_names=["audio_features"],
            dynamic_axes={
                "input_features": {0: "batch_size", 1: "num_frames"},
                "input_features_mask": {0: "batch_size", 1: "num_frames"},
                "audio_features": {0: "num_audio_tokens"},
            },
            opset_version=18,
            dynamo=False,
        )


def write_examples(examples: Path) -> dict[str, Path]:
    """Example inputs for the multimodal goldens: two drawn images and espeak-ng speech as 16 kHz WAV."""
    examples.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    garage = np.full((120, 200, 3), (90, 110, 120), np.uint8)
    cv2.rectangle(garage, (40, 30), (160, 115), (40, 40, 160), -1)
    for y in range(36, 110, 12):
        cv2.line(garage, (44, y), (156, y), (200, 200, 200), 2)
    cv2.putText(garage, "GARAGE", (52, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    garage = cv2.add(garage, rng.integers(0, 25, garage.shape, dtype=np.uint8))
    porch = np.zeros((160, 90, 3), np.uint8)
    porch[:, :, 1] = np.linspace(30, 220, 160, dtype=np.uint8)[:, None]
    cv2.circle(porch, (45, 60), 25, (0, 200, 255), -1)
    cv2.putText(porch, "7", (35, 140), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    paths = {"garage": examples / "garage.png", "porch": examples / "porch.png", "speech": examples / "speech.wav"}
    cv2.imwrite(str(paths["garage"]), garage)
    cv2.imwrite(str(paths["porch"]), porch)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), SPEECH], check=True)
        with wave.open(str(raw), "rb") as source:
            rate = source.getframerate()
            samples = np.frombuffer(source.readframes(source.getnframes()), np.int16)
    resampled = soxr.resample(samples.astype(np.float32) / 32768.0, rate, 16000)
    pcm = np.clip(np.round(resampled * 32768.0), -32768, 32767).astype(np.int16)
    with wave.open(str(paths["speech"]), "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(16000)
        target.writeframes(pcm.tobytes())
    return paths


def image_inputs(paths: list[Path], budget: int) -> dict[str, np.ndarray]:
    """transformers' own image processor on the decoded files (the same RGB pixels the daemon sees)."""
    images = [Image.fromarray(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)) for p in paths]
    out = Gemma4ImageProcessorPil(max_soft_tokens=budget)(images, return_tensors="np")
    return {k: np.asarray(v) for k, v in out.items()}


def audio_inputs(path: Path) -> dict[str, np.ndarray]:
    """transformers' own feature extractor on the WAV's samples (int16 / 32768)."""
    with wave.open(str(path), "rb") as source:
        samples = np.frombuffer(source.readframes(source.getnframes()), np.int16).astype(np.float32) / 32768.0
    out = Gemma4AudioFeatureExtractor()([samples], return_tensors="np")
    return {k: np.asarray(v) for k, v in out.items()}


def _expand(ids: list[int], placeholder: int, start: int, end: int, counts: list[int]) -> list[int]:
    out, counts = [], list(counts)
    for token in ids:
        out += [start, *[placeholder] * counts.pop(0), end] if token == placeholder else [token]
    assert not counts, "more media than placeholders"
    return out


@torch.no_grad()
def multimodal_goldens(
    model: Gemma4ForConditionalGeneration,
    tokenizer: Any,
    tokens: dict[str, int],
    paths: dict[str, Path],
    steps: int = 24,
) -> list[dict[str, Any]]:
    """Greedy ids by full recompute for an image, an audio and a two-image prompt.

    In float32: Gemma4AudioAttention casts to float32 itself, so the model cannot run in float64.
    """
    reference = model
    cases = [
        ("image", ["garage"], None, "\n\n<|image|>\n\nIs the garage door open?"),
        ("audio", [], "speech", "<|audio|>What did I say?"),
        ("two_images", ["garage", "porch"], None, "\n\n<|image|>\n\n\n\n<|image|>\n\nWhat changed?"),
    ]
    goldens = []
    for name, images, audio, content in cases:
        text = f"<|turn>user\n{content}<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
        ids = [2, *tokenizer.encode(text, add_special_tokens=False).ids]
        kwargs: dict[str, torch.Tensor] = {}
        if images:
            pixels = image_inputs([paths[i] for i in images], IMAGE_BUDGET)
            counts = [int(n) for n in pixels["num_soft_tokens_per_image"]]
            ids = _expand(ids, tokens["<|image|>"], tokens["<|image>"], tokens["<image|>"], counts)
            kwargs["pixel_values"] = torch.from_numpy(pixels["pixel_values"]).float()
            kwargs["image_position_ids"] = torch.from_numpy(pixels["image_position_ids"]).long()
        if audio:
            features = audio_inputs(paths[audio])
            mask = torch.from_numpy(features["input_features_mask"]).bool()
            count = int(
                reference.model.audio_tower(
                    torch.from_numpy(features["input_features"]).float(), mask
                ).attention_mask.sum()
            )
            ids = _expand(ids, tokens["<|audio|>"], tokens["<|audio>"], tokens["<audio|>"], [count])
            kwargs["input_features"] = torch.from_numpy(features["input_features"]).float()
            kwargs["input_features_mask"] = mask
        generated, gap = [], float("inf")
        for _ in range(steps):
            logits = reference(input_ids=torch.tensor([ids + generated]), use_cache=False, **kwargs).logits[0, -1]
            top = torch.topk(logits, 2).values
            gap = min(gap, float(top[0] - top[1]))
            generated.append(int(torch.argmax(logits)))
        goldens.append(
            {
                "name": name,
                "images": [str(paths[i].relative_to(paths[i].parent.parent)) for i in images],
                "audio": str(paths[audio].relative_to(paths[audio].parent.parent)) if audio else None,
                "image_budget": IMAGE_BUDGET,
                "prompt_ids": ids,
                "greedy_ids": generated,
                "min_top2_gap": round(gap, 6),
            }
        )
    return goldens
