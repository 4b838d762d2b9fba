"""Write tests/data/audio: speech clips, golden log-mel features from transformers, and soft-token counts.

Run with the export environment (torch + transformers 5.23), from the repository root:
    .venv-export/bin/python models/audio_goldens.py
Needs espeak-ng and ffmpeg on PATH. The tests only read what this writes; they never run it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from transformers import Gemma4AudioConfig
from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "audio"
RATE = 16000
# (name, text, samples): lengths that are not multiples of 128 exercise the extractor's padding.
SPEECH = (
    ("speech_0_5s", "Turn on the kitchen light.", 8123),
    ("speech_2s", "Is the garage door open? Please check the camera in the driveway and tell me.", 32000),
    (
        "speech_5s",
        "Good evening. Please close the blinds in the living room, turn the heating down to nineteen degrees, "
        "and remind me to water the plants tomorrow morning.",
        80077,
    ),
)
# Non-default settings, as a processor_config.json "feature_extractor" block would carry them.
OPTIONS = {
    "feature_size": 64,
    "frame_length_ms": 25.0,
    "hop_length_ms": 12.5,
    "min_frequency": 125.0,
    "max_frequency": 7600.0,
    "preemphasis": 0.97,
    "fft_overdrive": True,
    "input_scale_factor": 0.5,
    "mel_floor": 1e-5,
    "per_bin_mean": [float(v) for v in np.linspace(-4.0, -1.0, 64)],
    "per_bin_stddev": [float(v) for v in np.linspace(1.0, 3.0, 64)],
}
# Tiny random audio tower: only its output mask matters (the soft-token count).
TINY_AUDIO = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "subsampling_conv_channels": [128, 8],
}
TOKEN_LENGTHS = (
    *(100, 128, 129, 160, 161, 200, 288, 320, 321, 480, 481, 640, 641, 800, 801, 960, 1000, 1280, 1281),
    *(1440, 1441, 1600, 1601, 2000, 3333, 8000, 8123, 16000, 16001, 32000, 80077, 160000),
    *(479840, 479841, 479999, 480000, 480001, 496000),
)
LONG_SAMPLES = 31 * RATE


def long_signal(n: int) -> np.ndarray:
    """A deterministic 16-bit signal (tone + chirp + tremolo) for the 30 s cap; the test rebuilds it."""
    t = np.arange(n, dtype=np.float64) / RATE
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * (150.0 + 40.0 * t) * t) * np.cos(0.7 * t)
    return (np.round(x * 32767.0) / 32768.0).astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples to 16-bit PCM."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def speech(text: str, samples: int) -> np.ndarray:
    """espeak-ng speech resampled to 16 kHz, from its first sound, exactly `samples` long (int16)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
        with wave.open(str(path), "rb") as source:
            rate, raw = source.getframerate(), source.readframes(source.getnframes())
    x = soxr.resample(np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0, rate, RATE)
    onset = max(int(np.argmax(np.abs(x) > 0.01)) - 400, 0)
    clip = x[onset : onset + samples]
    assert len(clip) == samples, f"{text!r} is too short for {samples} samples"
    return to_int16(clip)


def reference(samples: np.ndarray, **settings: Any) -> tuple[np.ndarray, np.ndarray]:
    """transformers' features and mask for one clip (batch of one, as the processor calls it)."""
    out = Gemma4AudioFeatureExtractor(**settings)([samples], return_tensors="np")
    return out["input_features"][0], out["input_features_mask"][0]


def encoder_tokens(model: Gemma4AudioModel, features: np.ndarray, mask: np.ndarray) -> int:
    """True entries of the tiny audio tower's output attention_mask."""
    if mask.shape[0] == 0:
        return 0
    with torch.no_grad():
        out = model(torch.from_numpy(features[None]), attention_mask=torch.from_numpy(mask[None]))
    return int(out.attention_mask.sum())


def processor_tokens(mask: np.ndarray) -> int:
    """Gemma4Processor.replace_audio_token's count: two stride-2 conv blocks simulated on the mask."""
    t = len(mask)
    for _ in range(2):
        mask = mask[::2][: (t + 2 - 3) // 2 + 1]
        t = len(mask)
    return int(mask.sum())


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    """16-bit PCM WAV; `pcm` is [samples] or [samples, channels]."""
    frames = pcm.reshape(len(pcm), -1)
    with wave.open(str(path), "wb") as target:
        target.setnchannels(frames.shape[1])
        target.setsampwidth(2)
        target.setframerate(rate)
        target.writeframes(frames.astype("<i2").tobytes())


def main() -> None:
    """Write every input and golden."""
    OUT.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    inputs: dict[str, np.ndarray] = {name: speech(text, n) for name, text, n in SPEECH}
    n = 16045
    inputs["tone_1khz"] = to_int16(0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(n) / RATE))
    inputs["silence"] = np.zeros(RATE, dtype=np.int16)
    inputs["speech_161"] = inputs["speech_2s"][4000:4161]
    for name, pcm in inputs.items():
        features, mask = reference(pcm.astype(np.float32) / 32768.0)
        arrays[f"{name}/input"], arrays[f"{name}/features"], arrays[f"{name}/mask"] = pcm, features, mask
    plain = {**OPTIONS, "preemphasis_htk_flavor": False, "fft_overdrive": False, "per_bin_mean": None}
    for name, options in (("options", OPTIONS), ("options_plain", plain)):
        features, mask = reference(inputs["speech_0_5s"].astype(np.float32) / 32768.0, **options)
        arrays[f"{name}/features"], arrays[f"{name}/mask"] = features, mask
        arrays[f"{name}/settings"] = np.array(json.dumps(options))

    long_features, long_mask = reference(long_signal(LONG_SAMPLES))
    rows = np.unique(np.r_[np.arange(0, len(long_mask), 97), np.arange(len(long_mask) - 6, len(long_mask))])
    arrays["long/rows"], arrays["long/features"], arrays["long/mask"] = rows, long_features[rows], long_mask

    torch.manual_seed(0)
    model = Gemma4AudioModel(Gemma4AudioConfig(**TINY_AUDIO)).eval()
    rng = np.random.default_rng(0)
    frames, valid, tokens, counted = [], [], [], []
    for length in TOKEN_LENGTHS:
        features, mask = reference((0.1 * rng.standard_normal(length)).astype(np.float32))
        frames.append(mask.shape[0])
        valid.append(int(mask.sum()))
        counted.append(processor_tokens(mask))
        tokens.append(encoder_tokens(model, features, mask) if mask.any() else 0)
    assert tokens == counted, (tokens, counted)
    arrays["tokens/lengths"] = np.array(TOKEN_LENGTHS)
    arrays["tokens/frames"], arrays["tokens/valid"] = np.array(frames), np.array(valid)
    arrays["tokens/encoder"] = np.array(tokens)
    for name in ("speech_0_5s", "speech_2s", "speech_5s"):
        arrays[f"{name}/tokens"] = np.array(encoder_tokens(model, arrays[f"{name}/features"], arrays[f"{name}/mask"]))
    np.savez_compressed(OUT / "goldens.npz", **arrays)

    # Loader inputs: 1 s of the 2 s clip as 44.1 kHz stereo (a 3 kHz tone added to one channel and subtracted
    # from the other, so only a true average gives the speech back), and the whole clip as 16 kHz FLAC.
    first = inputs["speech_2s"][:RATE].astype(np.float64) / 32768.0
    wide = soxr.resample(first, RATE, 44100)
    tone = 0.1 * np.sin(2 * np.pi * 3000.0 * np.arange(len(wide)) / 44100)
    write_wav(OUT / "speech_44k_stereo.wav", to_int16(np.stack([wide + tone, wide - tone], axis=1)), 44100)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "speech.wav"
        write_wav(source, inputs["speech_2s"], RATE)
        flac = ["-map_metadata", "-1", "-fflags", "+bitexact", "-c:a", "flac", str(OUT / "speech_2s.flac")]
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), *flac], check=True)
    for path in sorted(OUT.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")
    print("tokens", dict(zip(TOKEN_LENGTHS, tokens, strict=True)))


if __name__ == "__main__":
    main()
