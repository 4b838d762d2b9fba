"""Example inputs and greedy goldens for the tiny multimodal model, preprocessed by transformers' own processors."""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soxr
import torch
from PIL import Image
from tiny_multimodal import IMAGE_BUDGET, SPEECH
from transformers import Gemma4ForConditionalGeneration
from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil


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
