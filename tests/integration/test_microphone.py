"""Microphones: a file played as a microphone, and real sounddevice capture through ALSA from a file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr
from rig.speech import to_int16

from edge_agent.config import MicrophoneConfig
from edge_agent.messages import AudioChunk
from edge_agent.sources.audio import FileMicrophone, read_audio_file


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(to_int16(samples).tobytes())
    return path


def collect(config: MicrophoneConfig) -> list[AudioChunk]:
    chunks: list[AudioChunk] = []
    FileMicrophone(config).run(chunks.append, threading.Event())
    return chunks


def test_a_48k_stereo_wav_becomes_16k_mono_chunks(tmp_path: Path) -> None:
    left = tone(1.0, 48000)
    stereo = np.stack([left, left], axis=1).reshape(-1)
    path = write_wav(tmp_path / "stereo.wav", stereo, 48000, channels=2)
    chunks = collect(MicrophoneConfig(file=path, realtime=False))
    assert all(len(c.samples) == 512 for c in chunks)
    assert [c.start_s for c in chunks[:3]] == [0.0, 0.032, 0.064]
    audio = np.concatenate([c.samples for c in chunks])
    assert len(audio) == pytest.approx(16000, abs=512)
    expected = soxr.resample(left, 48000, 16000)[: len(audio)]
    assert np.max(np.abs(audio[200:-200] - expected[200:-200])) < 1e-2


def test_raw_int16_file_and_a_corrupt_wav(tmp_path: Path) -> None:
    raw = tmp_path / "mic.raw"
    raw.write_bytes(to_int16(tone(0.5, 16000)).tobytes())
    samples, rate = read_audio_file(raw)
    assert rate == 16000 and samples.shape == (8000, 1)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(Exception, match="not a PCM WAV file"):
        read_audio_file(bad)


CAPTURE = """
import json, sys, threading, time
from edge_agent.config import MicrophoneConfig
from edge_agent.sources.audio import SoundDeviceMicrophone
chunks, stop = [], threading.Event()
def emit(chunk):
    chunks.append(chunk.samples.tolist())
    if len(chunks) == int(sys.argv[2]):
        stop.set()
mic = SoundDeviceMicrophone(MicrophoneConfig(device=sys.argv[1], sample_rate=48000))
timer = threading.Timer(30, stop.set)
timer.daemon = True
timer.start()
started = time.monotonic()
mic.run(emit, stop)
elapsed = time.monotonic() - started
print(json.dumps({"chunks": chunks, "overflows": mic.overflows, "paced": mic.paced, "elapsed_s": elapsed}))
"""


def test_sounddevice_capture_through_alsa_resampled_to_16k(alsa_capture) -> None:  # type: ignore[no-untyped-def]
    signal = tone(2.0, 48000, freq=300.0)
    env = alsa_capture(to_int16(signal))
    done = subprocess.run(
        [sys.executable, "-c", CAPTURE, "default", "20"], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    audio = np.concatenate([np.asarray(c, np.float32) for c in result["chunks"]])
    assert len(audio) == 20 * 512
    expected = soxr.resample(signal, 48000, 16000)[: len(audio)]
    assert np.max(np.abs(audio[200:-200] - expected[200:-200])) < 2e-2
    assert result["overflows"] == 0


def test_a_device_faster_than_real_time_is_paced_without_losing_frames(alsa_capture) -> None:  # type: ignore[no-untyped-def]
    signal = tone(4.0, 48000, freq=300.0)
    env = alsa_capture(to_int16(signal))  # ALSA's file plugin has no clock: unpaced it delivers ~1000x real time
    done = subprocess.run(
        [sys.executable, "-c", CAPTURE, "default", "110"], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["paced"] and "faster than real time" in done.stderr
    assert result["elapsed_s"] >= 110 * 0.032 - 1.5, "3.5 s of audio took at least 2 s to arrive"
    audio = np.concatenate([np.asarray(c, np.float32) for c in result["chunks"]])
    expected = soxr.resample(signal, 48000, 16000)[: len(audio)]
    assert np.max(np.abs(audio[200:-200] - expected[200:-200])) < 2e-2, "no frame lost or repeated across pauses"


def test_an_unknown_device_name_lists_the_inputs(alsa_capture) -> None:  # type: ignore[no-untyped-def]
    env = alsa_capture(to_int16(tone(1.0, 16000)))
    code = (
        "import sounddevice as sd\n"
        "from edge_agent.sources.audio import find_input_device\n"
        "try:\n    find_input_device(sd, 'no such mic')\nexcept Exception as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "no input device matching 'no such mic' (inputs: " in done.stdout and "'default'" in done.stdout


RETRY = """
import logging, threading
logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(message)s")
from edge_agent.config import MicrophoneConfig
from edge_agent.service import Backoff
from edge_agent.sources.audio import SoundDeviceMicrophone
stop = threading.Event()
mic = SoundDeviceMicrophone(MicrophoneConfig(device="USB PnP"), failed_backoff=Backoff(initial_s=0.1, maximum_s=0.2))
timer = threading.Timer(1.5, stop.set)
timer.daemon = True
timer.start()
mic.run(lambda chunk: None, stop)
print("state", mic.state, mic.retries)
print("error", mic.last_error)
"""


def test_a_missing_device_is_failed_said_once_and_retried_with_backoff(alsa_capture) -> None:  # type: ignore[no-untyped-def]
    env = alsa_capture(to_int16(tone(1.0, 16000)))
    done = subprocess.run([sys.executable, "-c", RETRY], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    state, error = done.stdout.strip().splitlines()[-2:]
    assert state.startswith("state failed ") and int(state.split()[-1]) >= 3  # tried again, and again
    assert error.startswith("error no input device matching 'USB PnP' (inputs: ")
    said = [line for line in done.stderr.splitlines() if "microphone: failed" in line]
    levels = [line.split()[0] for line in said]
    assert levels[0] == "WARNING" and set(levels[1:]) == {"DEBUG"}, said  # the same reason is said once
    assert "Traceback" not in done.stderr
