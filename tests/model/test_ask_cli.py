"""`edge-agent ask` on the tiny multimodal fixture, as a user runs it: answers, timings, and one clear error each."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
MODEL = MODELS / "tiny-gemma4"
CASES = {c["name"]: c for c in json.loads((MODEL / "goldens.json").read_text())["multimodal"]}


def ask(*args: str, model: Path = MODEL) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_agent", "ask", "--model", str(model), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_image_question_json_has_the_reference_ids_and_stage_timings() -> None:
    case = CASES["image"]
    done = ask(
        "Is the garage door open?",
        "--image",
        str(MODEL / case["images"][0]),
        "--budget",
        str(case["image_budget"]),
        "--variant",
        "fp32",
        "--greedy",
        "--ignore-eos",
        "--max-new-tokens",
        "8",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ids"] == case["greedy_ids"][:8]
    image_token = json.loads((MODEL / "config.json").read_text())["image_token_id"]
    assert result["prompt_tokens"] == len(case["prompt_ids"])
    assert result["image_tokens"] == [case["prompt_ids"].count(image_token)]
    assert set(result["timings_ms"]) == {"preprocess_ms", "encoder_ms", "prefill_ms", "decode_ms", "ttft_ms"}
    assert all(value > 0 for value in result["timings_ms"].values())


def test_audio_question_streams_text() -> None:
    case = CASES["audio"]
    done = ask("What did I say?", "--audio", str(MODEL / case["audio"]), "--max-new-tokens", "6", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n") and done.stderr == ""


def test_two_images_and_a_raw_recording(tmp_path: Path) -> None:
    with wave.open(str(MODEL / CASES["audio"]["audio"]), "rb") as source:
        (tmp_path / "speech.s16").write_bytes(source.readframes(source.getnframes()))
    images = [str(MODEL / p) for p in CASES["two_images"]["images"]]
    done = ask(
        "What changed?",
        "--image",
        images[0],
        "--image",
        images[1],
        "--audio",
        str(tmp_path / "speech.s16"),
        "--budget",
        "70",
        "--max-new-tokens",
        "2",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["image_tokens"]) == 2 and len(result["audio_tokens"]) == 1 and not result["audio_truncated"]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not a recording\n" * 20)
    odd = tmp_path / "odd.wav"
    header = b"RIFF" + (36 + 4).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (0x7777).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
    header += (32000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    odd.write_bytes(header + b"data" + (4).to_bytes(4, "little") + np.zeros(2, np.int16).tobytes())
    return {
        "corrupt image": (["--image", str(corrupt)], "corrupt.jpg"),
        "empty audio": (["--audio", str(empty)], "empty.wav"),
        "text as audio": (["--audio", str(text)], "notes.wav"),
        "unsupported sample format": (["--audio", str(odd)], "odd.wav"),
        "missing image": (["--image", str(tmp_path / "nope.png")], "nope.png"),
    }


@pytest.mark.parametrize(
    "name", ["corrupt image", "empty audio", "text as audio", "unsupported sample format", "missing image"]
)
def test_bad_input_is_one_clear_line(tmp_path: Path, name: str) -> None:
    args, mentions = _bad_inputs(tmp_path)[name]
    done = ask("?", *args)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: ") and mentions in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_model_without_a_vision_graph_says_so() -> None:
    done = ask("?", "--image", str(MODEL / CASES["image"]["images"][0]), model=MODELS / "tiny-gemma4-b")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot take images" in done.stderr and "vision_encoder_q4.onnx" in done.stderr


def test_a_budget_outside_the_five_is_a_usage_error() -> None:
    done = ask("?", "--image", str(MODEL / CASES["image"]["images"][0]), "--budget", "100")
    assert done.returncode == 2 and "invalid choice: 100" in done.stderr
