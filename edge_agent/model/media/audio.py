"""Gemma 4 audio features in numpy: log-mel frames and their mask, equal to transformers 5.23's extractor.

Checked in transformers 5.23 `models/gemma4/feature_extraction_gemma4.py` (Gemma4AudioFeatureExtractor),
`audio_utils.py`, `feature_extraction_sequence_utils.py`, `processing_gemma4.py` and `modeling_gemma4.py`;
tests/model/test_audio_features.py compares with its output (goldens written by models/audio_goldens.py):
- 16 kHz mono float32 in [-1, 1]; no preemphasis, no dither, input scale 1 (all configurable, all off).
- The extractor is called as the processor calls it (`fe([wav])`): padding "longest" with
  pad_to_multiple_of=128 (the clip is zero-padded on the right to a multiple of 128 samples) and truncation to
  max_length=480000 samples (30 s; a multiple of 128), so longer clips are cut to their first 30 s.
- Semicausal padding: frame_length // 2 = 160 zeros on the left (no centre/reflect padding). Frames of
  frame_length + 1 = 321 samples every hop 160; the last sample only feeds preemphasis, so 320 go through a
  periodic Hann window (np.hanning(321)[:-1], i.e. 0.5 - 0.5 cos(2 pi n / 320)), float32.
  frames = (n_padded + 160 - 321) // 160 + 1 (2 s: 199).
- rfft with n = 512 (2 ** ceil(log2(320)); doubled with fft_overdrive), magnitude |X| (not power).
- 128 triangular mel filters over 0-8000 Hz, HTK mel scale (2595 log10(1 + f / 700)), no normalisation,
  triangles in Hz on bins np.linspace(0, 8000, 257) (filter 0 is all zero at this resolution), float64.
- log(mel + mel_floor), mel_floor 1e-3 (silence: log(1e-3) = -6.908); optional per-bin mean/stddev; float32.
- Mask: frame i is valid iff its last sample (index i * 160 + 320 of the left-padded clip) is real audio, so
  valid frames = ceil((n - 160) / 160) for n samples; invalid frames have all-zero features.
- Soft tokens: the encoder's two stride-2 conv blocks keep mask[::2] twice, so tokens =
  ceil(ceil(valid / 2) / 2): 50 for 2 s, 750 for 30 s. This equals Gemma4Processor.replace_audio_token's count,
  and the True count of Gemma4AudioModel's output attention_mask on a random tiny config (goldens).
- Saved configs carry frame_length/hop_length/fft_length in samples, but transformers rebuilds them from
  frame_length_ms/hop_length_ms (defaults 20/10) and ignores the saved ones; so do we.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from edge_agent.model.media.audio_files import SAMPLE_RATE, AudioError, load_audio
from edge_agent.model.media.processor_config import checked_scalar, settings_from_model_dir

__all__ = ["SAMPLE_RATE", "AudioError", "AudioInput", "AudioSettings", "audio_features", "load_audio"]

log = logging.getLogger(__name__)

PAD_MULTIPLE = 128  # the extractor's call-time pad_to_multiple_of


@dataclass(frozen=True)
class AudioSettings:
    """Log-mel parameters under the names transformers saves them with; the defaults are Gemma 4's."""

    feature_size: int = 128
    sampling_rate: int = SAMPLE_RATE
    frame_length_ms: float = 20.0
    hop_length_ms: float = 10.0
    min_frequency: float = 0.0
    max_frequency: float = 8000.0
    preemphasis: float = 0.0
    preemphasis_htk_flavor: bool = True
    fft_overdrive: bool = False
    dither: float = 0.0
    input_scale_factor: float = 1.0
    mel_floor: float = 1e-3
    per_bin_mean: tuple[float, ...] | None = None
    per_bin_stddev: tuple[float, ...] | None = None
    max_seconds: float = 30.0

    def __post_init__(self) -> None:
        """Refuse settings the extractor could not run with."""
        if self.feature_size < 1 or self.sampling_rate < 1 or self.frame_length < 2 or self.hop_length < 1:
            raise ValueError(f"invalid audio settings: {self}")
        if not 0 <= self.min_frequency <= self.max_frequency or self.max_seconds <= 0:
            raise ValueError(f"invalid audio settings: {self}")
        for name in ("per_bin_mean", "per_bin_stddev"):
            values = getattr(self, name)
            if values is not None and len(values) != self.feature_size:
                raise ValueError(f"{name} has {len(values)} values for {self.feature_size} mel bins")

    @property
    def frame_length(self) -> int:
        """Window length in samples."""
        return round(self.sampling_rate * self.frame_length_ms / 1000.0)

    @property
    def hop_length(self) -> int:
        """Frame step in samples."""
        return round(self.sampling_rate * self.hop_length_ms / 1000.0)

    @property
    def fft_length(self) -> int:
        """FFT size: the next power of two of the frame length, doubled with fft_overdrive."""
        return (1 << math.ceil(math.log2(self.frame_length))) * (2 if self.fft_overdrive else 1)

    @property
    def max_samples(self) -> int:
        """Longest clip kept, rounded up to a multiple of 128 as the reference rounds max_length."""
        return -(-round(self.max_seconds * self.sampling_rate) // PAD_MULTIPLE) * PAD_MULTIPLE

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AudioSettings:
        """Settings from a saved feature-extractor dict; unknown keys are ignored, as transformers does."""
        kinds = {f.name: f.type for f in fields(cls) if f.name != "max_seconds"}
        values: dict[str, Any] = {}
        for key, kind in kinds.items():
            value = data.get(key)
            if value is None:
                continue
            if kind.startswith("tuple"):
                if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
                    raise ValueError(f"{key} must be a list of numbers, not {value!r}")
                values[key] = tuple(float(v) for v in value)
            else:
                values[key] = checked_scalar(key, str(kind), value)
        settings = cls(**values)
        for key in ("frame_length", "hop_length", "fft_length"):
            if data.get(key) not in (None, getattr(settings, key)):
                log.warning(
                    "ignoring %s=%r as transformers does: it is %d here", key, data[key], getattr(settings, key)
                )
        return settings

    @classmethod
    def from_model_dir(cls, root: Path) -> AudioSettings:
        """processor_config.json's "feature_extractor" block, else preprocessor_config.json, else the defaults."""
        return settings_from_model_dir(
            root,
            ("feature_extractor", "audio_processor"),
            parse=cls.from_dict,
            default=cls,
            error=AudioError,
            what="feature extractor",
        )


@dataclass(frozen=True)
class AudioInput:
    """One clip ready for the audio encoder."""

    features: np.ndarray  # [T, feature_size] float32, zero where mask is False
    mask: np.ndarray  # [T] bool, a prefix of True
    num_soft_tokens: int  # rows the audio encoder outputs for this mask
    seconds: float  # length of the clip as given, before any cut
    truncated: bool  # the clip was longer than max_seconds and only its start was used


@functools.lru_cache(maxsize=4)
def _tables(settings: AudioSettings) -> tuple[np.ndarray, np.ndarray]:
    """Periodic Hann window (float32) and the HTK mel filter bank [fft_length // 2 + 1, feature_size] (float64)."""
    window = np.hanning(settings.frame_length + 1)[:-1].astype(np.float32)
    mel_min, mel_max = (2595.0 * np.log10(1.0 + f / 700.0) for f in (settings.min_frequency, settings.max_frequency))
    edges = 700.0 * (np.power(10, np.linspace(mel_min, mel_max, settings.feature_size + 2) / 2595.0) - 1.0)
    bins = np.linspace(0, settings.sampling_rate // 2, settings.fft_length // 2 + 1)
    slopes = edges[None, :] - bins[:, None]
    widths = np.diff(edges)
    filters = np.maximum(0.0, np.minimum(-slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]))
    return window, filters


def _log_mel(wave: np.ndarray, count: int, settings: AudioSettings) -> np.ndarray:
    """log-mel of the first `count` frames of a left-padded float32 signal, computed as the reference does."""
    window, filters = _tables(settings)
    size, hop = settings.frame_length + 1, settings.hop_length
    raw = np.lib.stride_tricks.sliding_window_view(wave, size)[::hop][:count]
    p = settings.preemphasis
    if p > 0.0 and settings.preemphasis_htk_flavor:
        frames = np.concatenate([raw[:, :1] * (1.0 - p), raw[:, 1:-1] - p * raw[:, :-2]], axis=-1)
    elif p > 0.0:
        frames = raw[:, 1:] - p * raw[:, :-1]
    else:
        frames = raw[:, :-1]
    magnitude = np.abs(np.fft.rfft(frames * window, n=settings.fft_length, axis=-1))
    log_mel = np.log(magnitude @ filters + np.float64(settings.mel_floor))
    if settings.per_bin_mean is not None:
        log_mel = log_mel - np.asarray(settings.per_bin_mean)
    if settings.per_bin_stddev is not None:
        log_mel = log_mel / np.asarray(settings.per_bin_stddev)
    result: np.ndarray = log_mel.astype(np.float32)
    return result


def audio_features(samples: np.ndarray, settings: AudioSettings | None = None) -> AudioInput:
    """Log-mel features, mask and soft-token count of one mono clip at SAMPLE_RATE (cut to max_seconds)."""
    settings = settings or AudioSettings()
    x = np.asarray(samples)
    if x.ndim != 1:
        raise AudioError(f"audio must be one channel of samples, got an array of shape {x.shape}")
    if x.size == 0:
        raise AudioError("audio is empty: no samples")
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(f"audio samples must be floating point in [-1, 1], not {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise AudioError("audio has NaN or infinite samples")
    seconds = x.size / SAMPLE_RATE
    if settings.sampling_rate != SAMPLE_RATE:
        x = soxr.resample(x, SAMPLE_RATE, settings.sampling_rate).astype(np.float32, copy=False)
    truncated = x.size > settings.max_samples
    if truncated:
        log.warning("audio is %.1f s long: cut to its first %g s", seconds, settings.max_seconds)
        x = x[: settings.max_samples]
    n, frame, hop = x.size, settings.frame_length, settings.hop_length
    pad_left = frame // 2
    signal = np.zeros(-(-n // PAD_MULTIPLE) * PAD_MULTIPLE, dtype=np.float32)
    signal[:n] = x
    if settings.dither > 0.0:
        signal = signal + settings.dither * np.random.default_rng().standard_normal(signal.size).astype(np.float32)
    if settings.input_scale_factor != 1.0:
        signal = signal * settings.input_scale_factor
    wave = np.concatenate([np.zeros(pad_left, dtype=np.float32), signal])
    count = max((wave.size - frame - 1) // hop + 1, 0)
    mask = np.arange(count) * hop + frame < pad_left + n  # the frame's last sample is real audio
    valid = int(mask.sum())
    if valid == 0:
        shortest = frame - pad_left + 1
        raise AudioError(
            f"audio is too short: {x.size} samples ({1000 * x.size / settings.sampling_rate:.1f} ms); "
            f"one frame needs at least {shortest} ({1000 * shortest / settings.sampling_rate:.1f} ms)"
        )
    features = np.zeros((count, settings.feature_size), dtype=np.float32)
    features[:valid] = _log_mel(wave, valid, settings)
    tokens = int(mask[::2][::2].sum())  # the encoder's two stride-2 conv blocks each keep mask[:, ::2]
    return AudioInput(features, mask, tokens, seconds, truncated)
