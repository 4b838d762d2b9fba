"""Gemma 4 audio features against transformers' goldens (models/audio_goldens.py), and audio file loading."""

from __future__ import annotations

import ast
import json
import logging
import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from edge_agent.model.media import audio
from edge_agent.model.media.audio import SAMPLE_RATE, AudioError, AudioSettings, audio_features, load_audio

DATA = Path(__file__).resolve().parent.parent / "data" / "audio"
GOLDENS = np.load(DATA / "goldens.npz")
CLIPS = ("speech_0_5s", "speech_2s", "speech_5s", "tone_1khz", "silence", "speech_161")
TOLERANCE = 1e-4


def clip(name: str) -> np.ndarray:
    """A golden input as the golden script fed it: 16-bit samples / 32768."""
    return GOLDENS[f"{name}/input"].astype(np.float32) / 32768.0


def long_signal(n: int) -> np.ndarray:
    """The golden script's 31 s signal (models/audio_goldens.py:long_signal)."""
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * (150.0 + 40.0 * t) * t) * np.cos(0.7 * t)
    return (np.round(x * 32767.0) / 32768.0).astype(np.float32)


def write_wav(path: Path, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM WAV with the standard library; `pcm` is [samples] or [samples, channels] int16."""
    frames = pcm.reshape(len(pcm), -1)
    with wave.open(str(path), "wb") as target:
        target.setnchannels(frames.shape[1])
        target.setsampwidth(2)
        target.setframerate(rate)
        target.writeframes(frames.astype("<i2").tobytes())
    return path


def riff(format_tag: int, bits: int, data: bytes, channels: int = 1, rate: int = SAMPLE_RATE) -> bytes:
    """A minimal RIFF/WAVE file built by hand."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- features against transformers -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLIPS)
def test_features_and_mask_equal_the_reference(name: str) -> None:
    result = audio_features(clip(name))
    expected, mask = GOLDENS[f"{name}/features"], GOLDENS[f"{name}/mask"]
    assert result.features.dtype == np.float32 and result.mask.dtype == np.bool_
    assert result.features.shape == expected.shape
    np.testing.assert_allclose(result.features, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(result.mask, mask)
    assert not result.truncated
    assert result.seconds == pytest.approx(len(GOLDENS[f"{name}/input"]) / SAMPLE_RATE)


def test_two_seconds_of_speech_as_documented() -> None:
    result = audio_features(clip("speech_2s"))
    assert result.features.shape == (199, 128)
    assert result.num_soft_tokens == 50 == int(GOLDENS["speech_2s/tokens"])
    assert result.features[result.mask].min() >= math.log(1e-3) - 1e-6
    assert not result.features[~result.mask].any()


def test_silence_is_the_mel_floor() -> None:
    result = audio_features(np.zeros(SAMPLE_RATE, dtype=np.float32))
    np.testing.assert_allclose(result.features[result.mask], math.log(1e-3), atol=1e-6)


@pytest.mark.parametrize(("name", "file"), [("options", "processor_config.json"), ("options_plain", "preprocessor")])
def test_configured_settings_equal_the_reference(tmp_path: Path, name: str, file: str) -> None:
    options = json.loads(str(GOLDENS[f"{name}/settings"]))
    if file == "processor_config.json":
        config = {"image_processor": {"max_soft_tokens": 280}, "feature_extractor": options}
        (tmp_path / file).write_text(json.dumps(config))
    else:  # a legacy flat preprocessor_config.json
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(options))
    settings = AudioSettings.from_model_dir(tmp_path)
    assert settings != AudioSettings()
    result = audio_features(clip("speech_0_5s"), settings)
    np.testing.assert_allclose(result.features, GOLDENS[f"{name}/features"], rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(result.mask, GOLDENS[f"{name}/mask"])


# --- soft tokens -------------------------------------------------------------------------------------------------


def test_soft_tokens_equal_the_reference_encoder_mask() -> None:
    lengths, frames = GOLDENS["tokens/lengths"], GOLDENS["tokens/frames"]
    valid, encoder = GOLDENS["tokens/valid"], GOLDENS["tokens/encoder"]
    checked = 0
    for n, t, v, tokens in zip(lengths.tolist(), frames.tolist(), valid.tolist(), encoder.tolist(), strict=True):
        if v == 0:
            with pytest.raises(AudioError, match="too short"):
                audio_features(np.zeros(n, dtype=np.float32))
            continue
        result = audio_features(np.zeros(n, dtype=np.float32))
        assert (result.features.shape[0], int(result.mask.sum()), result.num_soft_tokens) == (t, v, tokens), n
        assert tokens == math.ceil(math.ceil(v / 2) / 2)
        checked += 1
    assert checked > 25 and max(encoder) == 750


@pytest.mark.parametrize("name", ["speech_0_5s", "speech_2s", "speech_5s"])
def test_soft_tokens_of_speech(name: str) -> None:
    assert audio_features(clip(name)).num_soft_tokens == int(GOLDENS[f"{name}/tokens"])


# --- the 30 s cap ------------------------------------------------------------------------------------------------


def test_long_audio_is_cut_to_30_seconds(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=audio.__name__):
        result = audio_features(long_signal(31 * SAMPLE_RATE))
    assert result.truncated and result.seconds == pytest.approx(31.0)
    assert result.features.shape == (2999, 128) == (len(GOLDENS["long/mask"]), 128)
    np.testing.assert_array_equal(result.mask, GOLDENS["long/mask"])
    rows = GOLDENS["long/rows"]
    np.testing.assert_allclose(result.features[rows], GOLDENS["long/features"], rtol=0, atol=TOLERANCE)
    assert result.num_soft_tokens == 750
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "31.0 s" in warnings[0] and "30 s" in warnings[0], warnings


def test_exactly_30_seconds_is_not_cut(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=audio.__name__):
        result = audio_features(np.zeros(30 * SAMPLE_RATE, dtype=np.float32))
    assert not result.truncated and result.num_soft_tokens == 750
    assert not caplog.records


def test_max_seconds_is_a_setting() -> None:
    result = audio_features(clip("speech_5s"), AudioSettings(max_seconds=2.0))
    assert result.truncated and result.seconds == pytest.approx(80077 / SAMPLE_RATE)
    np.testing.assert_allclose(result.features, audio_features(clip("speech_5s")[:32000]).features, atol=1e-6)


# --- settings ----------------------------------------------------------------------------------------------------


def test_defaults_are_gemma4s(tmp_path: Path) -> None:
    settings = AudioSettings.from_model_dir(tmp_path)
    assert settings == AudioSettings()
    assert (settings.frame_length, settings.hop_length, settings.fft_length) == (320, 160, 512)
    assert (settings.feature_size, settings.sampling_rate, settings.mel_floor) == (128, 16000, 1e-3)
    assert settings.max_samples == 480000


def test_saved_transformers_config_gives_the_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved = {
        "dither": 0.0,
        "feature_extractor_type": "Gemma4AudioFeatureExtractor",
        "feature_size": 128,
        "fft_length": 512,
        "fft_overdrive": False,
        "frame_length": 320,
        "hop_length": 160,
        "input_scale_factor": 1.0,
        "max_frequency": 8000.0,
        "mel_floor": 0.001,
        "min_frequency": 0.0,
        "padding_side": "right",
        "padding_value": 0.0,
        "per_bin_mean": None,
        "per_bin_stddev": None,
        "preemphasis": 0.0,
        "preemphasis_htk_flavor": True,
        "return_attention_mask": True,
        "sampling_rate": 16000,
    }
    (tmp_path / "processor_config.json").write_text(json.dumps({"feature_extractor": saved}))
    with caplog.at_level(logging.WARNING):
        assert AudioSettings.from_model_dir(tmp_path) == AudioSettings()
    assert not caplog.records


def test_saved_frame_length_in_samples_is_ignored_as_transformers_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"frame_length": 400, "mel_floor": 1e-5}))
    with caplog.at_level(logging.WARNING):
        settings = AudioSettings.from_model_dir(tmp_path)
    assert settings.frame_length == 320 and settings.mel_floor == 1e-5
    assert "frame_length=400" in caplog.text


def test_processor_config_without_an_audio_block_falls_back(tmp_path: Path) -> None:
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": {"max_soft_tokens": 280}}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"mel_floor": 1e-4}))
    assert AudioSettings.from_model_dir(tmp_path).mel_floor == 1e-4


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "unreadable JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"feature_extractor": {"feature_size": "128"}}', "feature_size must be an integer"),
        ('{"feature_extractor": {"per_bin_mean": [1.0, 2.0]}}', "per_bin_mean has 2 values for 128"),
        ('{"feature_extractor": {"hop_length_ms": 0}}', "invalid audio settings"),
    ],
)
def test_bad_config_names_the_file(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "processor_config.json").write_text(text)
    with pytest.raises(AudioError, match=match) as info:
        AudioSettings.from_model_dir(tmp_path)
    assert "processor_config.json" in str(info.value)


def test_dither_adds_noise() -> None:
    silent = np.zeros(SAMPLE_RATE, dtype=np.float32)
    first, second = (audio_features(silent, AudioSettings(dither=0.01)).features for _ in range(2))
    assert first.max() > math.log(1e-3) + 0.1 and not np.array_equal(first, second)


# --- bad samples -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros((2, 16000), dtype=np.float32), "one channel"),
        (np.zeros(16000, dtype=np.int16), "floating point"),
        (np.full(16000, np.nan, dtype=np.float32), "NaN"),
        (np.zeros(160, dtype=np.float32), "too short: 160 samples"),
    ],
)
def test_unusable_samples(samples: np.ndarray, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        audio_features(samples)


def test_float64_input_is_accepted() -> None:
    result = audio_features(clip("speech_0_5s").astype(np.float64))
    np.testing.assert_allclose(result.features, GOLDENS["speech_0_5s/features"], rtol=0, atol=TOLERANCE)


# --- load_audio --------------------------------------------------------------------------------------------------


def test_flac_is_lossless_and_gives_the_golden_features() -> None:
    samples = load_audio(DATA / "speech_2s.flac")
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, clip("speech_2s"))
    result = audio_features(samples)
    np.testing.assert_allclose(result.features, GOLDENS["speech_2s/features"], rtol=0, atol=TOLERANCE)


def test_44k_stereo_wav_is_downmixed_and_resampled() -> None:
    with wave.open(str(DATA / "speech_44k_stereo.wav"), "rb") as source:
        assert (source.getframerate(), source.getnchannels()) == (44100, 2)
    samples = load_audio(DATA / "speech_44k_stereo.wav")
    reference = clip("speech_2s")[:SAMPLE_RATE]
    assert samples.dtype == np.float32 and samples.shape == reference.shape
    # The channels carry +-0.1 of a 3 kHz tone: only an average cancels it.
    assert np.abs(samples - reference).max() < 0.01
    assert np.corrcoef(samples, reference)[0, 1] > 0.999


def test_16_bit_wav_is_exact(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "speech.wav", GOLDENS["speech_0_5s/input"])
    np.testing.assert_array_equal(load_audio(path), clip("speech_0_5s"))


def test_multichannel_wav_is_averaged(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pcm = rng.integers(-20000, 20000, size=(4000, 3), dtype=np.int16)
    samples = load_audio(write_wav(tmp_path / "three.wav", pcm))
    np.testing.assert_allclose(samples, pcm.astype(np.float64).mean(axis=1) / 32768.0, atol=1e-6)


@pytest.mark.parametrize(("subtype", "atol"), [("PCM_U8", 1 / 128), ("PCM_24", 1e-6), ("PCM_32", 1e-6)])
def test_other_pcm_widths(tmp_path: Path, subtype: str, atol: float) -> None:
    reference = clip("speech_0_5s")
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(str(path), reference, SAMPLE_RATE, subtype=subtype)
    np.testing.assert_allclose(load_audio(path), reference, atol=atol)


def test_ieee_float_wav_written_by_hand(tmp_path: Path) -> None:
    reference = clip("speech_0_5s") * 0.9
    path = tmp_path / "float.wav"
    path.write_bytes(riff(3, 32, reference.astype("<f4").tobytes()))
    np.testing.assert_array_equal(load_audio(path), reference)


@pytest.mark.parametrize("subtype", ["ULAW", "ALAW"])
def test_companded_wav_is_decoded(tmp_path: Path, subtype: str) -> None:
    reference = clip("speech_0_5s")
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(str(path), reference, SAMPLE_RATE, subtype=subtype)
    np.testing.assert_allclose(load_audio(path), reference, atol=0.04)


def test_other_rates_are_resampled(tmp_path: Path) -> None:
    reference = clip("speech_2s")
    low = np.round(soxr.resample(reference, SAMPLE_RATE, 8000) * 32768).astype(np.int16)
    samples = load_audio(write_wav(tmp_path / "8k.wav", low, rate=8000))
    assert samples.shape == (32000,)
    np.testing.assert_allclose(samples, soxr.resample(low.astype(np.float32) / 32768, 8000, SAMPLE_RATE), atol=1e-6)


@pytest.mark.parametrize("suffix", [".raw", ".pcm", ".s16", ".RAW"])
def test_raw_16_bit_little_endian(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"speech{suffix}"
    path.write_bytes(GOLDENS["speech_0_5s/input"].astype("<i2").tobytes())
    np.testing.assert_array_equal(load_audio(path), clip("speech_0_5s"))


def test_raw_at_another_rate(tmp_path: Path) -> None:
    pcm = GOLDENS["speech_0_5s/input"]
    path = tmp_path / "speech.raw"
    path.write_bytes(pcm.astype("<i2").tobytes())
    samples = load_audio(path, raw_rate=8000)
    assert samples.shape == (2 * len(pcm),)
    np.testing.assert_allclose(samples, soxr.resample(pcm.astype(np.float32) / 32768, 8000, SAMPLE_RATE), atol=1e-6)


def unknown_format(path: Path) -> None:
    path.write_bytes(riff(0x7777, 16, b"\x00\x01" * 800))


def truncated_header(path: Path) -> None:
    path.write_bytes(riff(1, 16, b"\x00\x01" * 800)[:30])


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        ("missing.wav", None, "no such file"),
        ("folder.wav", "dir", "not a regular file"),
        ("empty.wav", b"", "empty file"),
        ("empty.raw", b"", "empty file"),
        ("notes.wav", "This is a note, not a recording.\n" * 20, "a text file, not audio"),
        ("notes.txt", "Ünïcödé text is text too.\n" * 200, "a text file, not audio"),
        ("noise.flac", bytes(range(256)) * 8, "not a readable audio file"),
        ("odd.raw", b"\x00\x01\x02", "not a whole number of 16-bit samples"),
        ("format.wav", unknown_format, "unsupported WAV sample format \\(format tag 0x7777\\)"),
        ("cut.wav", truncated_header, "unreadable WAV file"),
        ("nothing.wav", riff(1, 16, b""), "no audio samples"),
    ],
)
def test_unusable_files(tmp_path: Path, name: str, make: object, match: str) -> None:
    path = tmp_path / name
    if make == "dir":
        path.mkdir()
    elif isinstance(make, str):
        path.write_text(make, encoding="utf-8")
    elif isinstance(make, bytes):
        path.write_bytes(make)
    elif callable(make):
        make(path)
    with pytest.raises(AudioError, match=match) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, ValueError)


def test_audio_modules_stay_inside_the_model_package() -> None:
    forbidden = {"sources", "gating", "sinks", "tools", "health", "app"}
    for name in ("audio.py", "audio_files.py"):
        source = Path(audio.__file__).with_name(name)
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for module in modules:
                parts = module.split(".")
                assert not (parts[0] == "edge_agent" and len(parts) > 1 and parts[1] in forbidden), (name, module)
