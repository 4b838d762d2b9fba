"""`edge-agent ask` with reference images: from a config's `references` by name, or given as NAME=FILE, and one
clear line for each mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.model.media.vision import load_image
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.feature_cache import reference_image
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model

MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-gemma4"
PORCH, GARAGE = MODEL / "examples" / "porch.png", MODEL / "examples" / "garage.png"
GREEDY = ("--greedy", "--ignore-eos", "--max-new-tokens", "6", "--json")


def ask(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_agent", "ask", "--model", str(MODEL), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"model: {{path: {MODEL}}}\n"
        f"references: [{{name: rex, image: {PORCH}, description: 'Rex, our dog'}}, {{name: car, image: {GARAGE}}}]\n"
    )
    return path


def test_a_configured_reference_is_shown_with_its_description(config: Path) -> None:
    done = ask("Is this Rex?", "-c", str(config), "--reference", "rex", "--image", str(GARAGE), *GREEDY)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    engine, tokenizer = TextEngine(locate_model(MODEL, "q4")), Tokenizer(MODEL)
    rex = reference_image("rex", load_image(PORCH), 70, "Rex, our dog")
    question = Question("Is this Rex?", images=(load_image(GARAGE),), references=(rex,))
    expected = Answerer(engine, tokenizer).answer(
        question, GenerationSettings(max_new_tokens=6, max_context=8192, eos_token_ids=frozenset())
    )
    assert result["ids"] == expected.ids and result["prompt_tokens"] == expected.prompt_tokens
    assert result["reference_tokens"] == [result["image_tokens"][0]] and len(result["image_tokens"]) == 2


def test_a_reference_image_given_as_name_and_file() -> None:
    done = ask("Is this Rex?", "--reference-image", f"rex={PORCH}", "--reference-budget", "140", *GREEDY)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["reference_tokens"] == result["image_tokens"] and 70 < result["reference_tokens"][0] <= 140


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--reference", "cat"), "error: references: no reference image named 'cat' (known: car, rex)"),
        (("--reference-image", "rex"), "error: --reference-image 'rex': expected NAME=FILE, e.g. rex=rex.jpg"),
        (("--reference-image", "rex dog=" + str(PORCH)), "error: reference 'rex dog': a name is 1-64 of"),
    ],
)
def test_mistakes_get_one_line(config: Path, args: tuple[str, ...], error: str) -> None:
    done = ask("Is this Rex?", "-c", str(config), *args)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(error) and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_file_that_is_not_an_image_and_a_missing_config(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    done = ask("Is this Rex?", "--reference-image", f"rex={text}")
    assert (done.returncode, done.stderr) == (1, f"error: --reference-image rex: {text}: not a JPEG or PNG image\n")
    done = ask("Is this Rex?", "--reference", "rex")
    assert done.returncode == 1 and done.stderr.startswith("error: --reference needs -c/--config")
    done = ask("Is this Rex?", "-c", str(tmp_path / "none.yaml"), "--reference", "rex")
    assert done.returncode == 2 and "none.yaml" in done.stderr
