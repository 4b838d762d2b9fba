"""`edge-agent generate` on the tiny fixtures, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
GENERATE = [sys.executable, "-m", "edge_agent", "generate"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GENERATE, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["tiny-gemma4", "tiny-gemma4-b"])
def test_json_greedy_ids_equal_the_pytorch_goldens(name: str) -> None:
    case = json.loads((MODELS / name / "goldens.json").read_text())["cases"][2]
    done = run(
        "--model",
        str(MODELS / name),
        "--variant",
        "fp32",
        "--prompt-ids",
        ",".join(map(str, case["prompt_ids"])),
        "--greedy",
        "--ignore-eos",
        "--max-new-tokens",
        "32",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ids"] == case["greedy_ids"] and result["prompt_ids"] == case["prompt_ids"]
    assert result["finish_reason"] == "length"
    assert result["prefill_tokens_per_s"] > 0 and result["decode_tokens_per_s"] > 0 and result["ttft_ms"] > 0


def test_chat_prompt_streams_text_and_seeds_repeat() -> None:
    args = ["--model", str(MODELS / "tiny-gemma4"), "--prompt", "Is the garage door open?", "--max-new-tokens", "12"]
    first = run(*args, "--temperature", "0.8", "--seed", "5", "--json")
    again = run(*args, "--temperature", "0.8", "--seed", "5", "--json")
    other = run(*args, "--temperature", "0.8", "--seed", "6", "--json")
    assert json.loads(first.stdout)["ids"] == json.loads(again.stdout)["ids"] != json.loads(other.stdout)["ids"]
    prompt = json.loads(first.stdout)["prompt_ids"]
    assert prompt[0] == 2 and prompt.count(2) == 1  # one <bos>
    streamed = run(*args, "--greedy")
    text = json.loads(run(*args, "--greedy", "--json").stdout)["text"]
    assert streamed.returncode == 0 and streamed.stdout == text + "\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "fp16", "--prompt", "x"], "embed_tokens_fp16.onnx: missing for variant 'fp16'"),
        (["--variant", "q9", "--prompt", "x"], "unknown model variant 'q9'"),
        (["--prompt-ids", "2,x,3"], "--prompt-ids must be integers separated by commas, got '2,x,3'"),
        (["--prompt", "word " * 400, "--max-context", "128"], "context holds 128"),
        (["--prompt-ids", "2,99999"], "token ids outside the vocabulary"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(args: list[str], message: str) -> None:
    done = run("--model", str(MODELS / "tiny-gemma4"), *args)
    assert done.returncode != 0
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_a_directory_that_is_not_a_model() -> None:
    done = run("--model", str(MODELS), "--prompt", "x")
    assert done.returncode == 1 and "config.json: missing" in done.stderr
