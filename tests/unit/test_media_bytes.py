"""Images and recordings from bytes decode as the file loaders decode them, and what is not one is refused."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from edge_agent.model.media.audio_files import AudioError, load_audio
from edge_agent.model.media.from_bytes import audio_from_bytes, image_from_bytes
from edge_agent.model.media.vision import ImageError, load_image

EXAMPLES = Path(__file__).resolve().parents[2] / "models" / "tiny-gemma4" / "examples"


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_an_image_from_bytes_equals_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"garage{suffix}"
    cv2.imwrite(str(path), cv2.imread(str(EXAMPLES / "garage.png")))
    assert np.array_equal(image_from_bytes(path.read_bytes()), load_image(path))


@pytest.mark.parametrize(("rate", "channels", "fmt"), [(16000, 1, "WAV"), (48000, 2, "WAV"), (44100, 1, "FLAC")])
def test_a_recording_from_bytes_equals_the_file(tmp_path: Path, rate: int, channels: int, fmt: str) -> None:
    wave = np.sin(np.linspace(0, 400, rate))[:, None].repeat(channels, axis=1) * 0.5
    path = tmp_path / f"tone.{fmt.lower()}"
    soundfile.write(path, wave, rate, format=fmt)
    samples = audio_from_bytes(path.read_bytes(), max_s=2)
    assert samples.dtype == np.float32 and samples.shape == (16000,)
    assert np.array_equal(samples, load_audio(path))


def test_what_is_not_allowed_is_refused_in_one_line() -> None:
    with pytest.raises(ImageError, match="not a JPEG or PNG image"):
        image_from_bytes(b"GIF89a" + bytes(100))
    ok, bomb = cv2.imencode(".png", np.zeros((5000, 5000), np.uint8))
    assert ok
    with pytest.raises(ImageError, match=r"5000x5000 pixels is too large \(at most 1,000,000 pixels\)"):
        image_from_bytes(bomb.tobytes(), max_pixels=1_000_000)
    with pytest.raises(ImageError, match="unreadable PNG"):
        image_from_bytes((EXAMPLES / "garage.png").read_bytes()[:40])
    with pytest.raises(AudioError, match="not a WAV or FLAC"):
        audio_from_bytes(b"OggS" + bytes(100), max_s=30)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((100, 8), np.float32), 48000, format="WAV")
    with pytest.raises(AudioError, match=r"8 channel\(s\) at 48000 Hz is not supported"):
        audio_from_bytes(buffer.getvalue(), max_s=30)
    with pytest.raises(AudioError, match=r"1\.5 s is too long \(at most 1 s\)"):
        audio_from_bytes((EXAMPLES / "speech.wav").read_bytes(), max_s=1)
