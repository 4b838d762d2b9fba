"""Tiny Gemma 4 vision and audio encoders on top of a tiny text model: build and export.

Used by build_tiny_gemma4.py for presets with `multimodal: True`. The text weights are copied unchanged from the
Gemma4ForCausalLM the text goldens come from, so the text graphs stay identical. Needs the `export` extra.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
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


def add_encoders(
    causal: Gemma4ForCausalLM, config: Gemma4TextConfig, tokens: dict[str, int], out: Path
) -> tuple[Gemma4ForConditionalGeneration, dict[str, Path]]:
    """Build the encoders on `causal`, export them into <out>/onnx, add their configs to config.json."""
    from build_tiny_gemma4 import externalize
    from tiny_media_goldens import audio_inputs, image_inputs, write_examples

    model = build_model(causal, multimodal_config(config, tokens), seed=7)
    examples = write_examples(out / "examples")
    export_encoders(
        model,
        out / "onnx",
        image_inputs([examples["garage"], examples["porch"]], IMAGE_BUDGET),
        audio_inputs(examples["speech"]),
    )
    for graph in ("vision_encoder", "audio_encoder"):
        externalize(out / "onnx" / f"{graph}.onnx")
    data = json.loads((out / "config.json").read_text())
    data["vision_config"] = model.config.vision_config.to_dict()
    data["audio_config"] = model.config.audio_config.to_dict()
    (out / "config.json").write_text(json.dumps(data, indent=2) + "\n")
    return model, examples
