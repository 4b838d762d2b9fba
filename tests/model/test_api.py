"""The Python API on the tiny fixtures: answers about text, images and audio, JSON, tool calls, streams, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest
import soundfile
from PIL import Image

from edge_agent.api import InvalidAnswerError, Model, ModelError, ToolCall

MODELS = Path(__file__).resolve().parents[2] / "models"
MODEL = MODELS / "tiny-gemma4"
CASES = {c["name"]: c for c in json.loads((MODEL / "goldens.json").read_text())["multimodal"]}
LIGHT = {"type": "object", "properties": {"state": {"type": "string", "enum": ["ON", "OFF"]}}, "required": ["state"]}
DOOR = {
    "type": "object",
    "properties": {"open": {"type": "boolean"}, "people": {"type": "integer", "minimum": 0, "maximum": 5}},
    "required": ["open", "people"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    """fp32: the numerics the goldens were made with (PyTorch's greedy ids)."""
    with Model.load(str(MODEL), variant="fp32") as loaded:
        yield loaded


def test_a_text_question_with_the_default_variant_from_a_str_path() -> None:
    with Model.load(str(MODEL), threads=1) as model:
        assert model.label == "tiny-gemma4 (q4)" and model.modalities == {"text": True, "image": True, "audio": True}
        answer = model.ask("Hello, who are you?", max_new_tokens=12)
        assert isinstance(answer, str) and answer
        reply = model.reply("Hello, who are you?", max_new_tokens=12)
        assert reply.text == answer and 0 < len(reply.ids) <= 12 and reply.finish_reason in ("eos", "length")
    with pytest.raises(ModelError, match="closed"):
        model.ask("Still there?")


def test_an_image_as_path_array_pil_or_bytes_gives_the_reference_answer(model: Model) -> None:
    case = CASES["image"]
    path = MODEL / case["images"][0]
    forms = [str(path), path, cv2.imread(str(path)), Image.open(path), path.read_bytes()]
    replies = [
        model.reply("Is the garage door open?", images=[form], image_budget=case["image_budget"], max_new_tokens=8)
        for form in forms
    ]
    for reply in replies:
        assert reply.prompt_tokens == len(case["prompt_ids"])
        assert reply.ids and list(reply.ids) == case["greedy_ids"][: len(reply.ids)]
        assert reply.timings_ms is not None and reply.timings_ms["encoder_ms"] > 0
    assert len({r.ids for r in replies}) == 1


def test_audio_as_path_or_samples_gives_the_reference_answer(model: Model) -> None:
    case = CASES["audio"]
    path = MODEL / case["audio"]
    samples, rate = soundfile.read(path, dtype="int16")
    assert rate == 16000
    forms = [str(path), samples, samples.astype(np.float32) / 32768.0, path.read_bytes()]
    question = "What did I say?"
    for form in forms:
        reply = model.reply(question, audio=[form], image_budget=case["image_budget"], max_new_tokens=6)
        assert reply.prompt_tokens == len(case["prompt_ids"])
        assert reply.ids and list(reply.ids) == case["greedy_ids"][: len(reply.ids)]


def test_a_schema_gives_a_parsed_valid_value(model: Model) -> None:
    frame = cv2.imread(str(MODEL / "examples" / "porch.png"))
    value = model.ask("How many people are on the porch, and is the door open?", images=[frame], schema=DOOR)
    jsonschema.validate(value, DOOR)
    assert isinstance(value, dict) and isinstance(value["open"], bool)
    assert model.ask("Is it on?", schema={"type": "boolean"}) in (True, False)
    with pytest.raises(InvalidAnswerError, match="not JSON"):  # cut before the document is complete
        model.ask(
            "Describe it.", schema={"type": "array", "items": {"type": "string"}, "minItems": 50}, max_new_tokens=3
        )


def test_declared_tools_give_well_formed_calls(model: Model) -> None:
    tools = [
        {"name": "light", "description": "Switch the light.", "parameters": LIGHT},
        {"name": "clock", "description": "Tell the time."},
    ]
    calls = model.ask("Turn on the light.", tools=tools, tool_choice="required", max_new_tokens=64)
    assert calls and all(isinstance(call, ToolCall) for call in calls)
    for call in calls:
        assert call.name in ("light", "clock")
        if call.name == "light":
            jsonschema.validate(dict(call.arguments), LIGHT)
    reply = model.reply("Turn on the light.", tools=tools, tool_choice="required", max_new_tokens=64)
    assert reply.tool_calls == tuple(calls) and "<|tool_call>" not in reply.text


def test_streamed_pieces_join_to_the_whole_answer(model: Model) -> None:
    question = "Tell me about the garage."
    image = MODEL / "examples" / "garage.png"
    pieces = list(model.stream(question, images=[image], max_new_tokens=30))
    assert len(pieces) >= 5 and all(isinstance(piece, str) and piece for piece in pieces)  # as it is written
    assert "".join(pieces) == model.ask(question, images=[image], max_new_tokens=30)
    assert "".join(model.ask(question, stream=True, max_new_tokens=10)) == model.ask(question, max_new_tokens=10)
    for _piece in model.stream(question, max_new_tokens=200):
        break  # leaving early stops the generation, and the model takes the next question
    assert model.ask("And now?", max_new_tokens=4) == model.ask("And now?", max_new_tokens=4)


def test_bad_input_gives_one_clear_error(model: Model, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a directory"):
        Model.load(str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match=r"config\.json: missing"):
        Model.load(tmp_path)
    with pytest.raises(ModelError, match="unknown model variant 'q5'"):
        Model.load(MODEL, variant="q5")
    with pytest.raises(ModelError, match="intra_op_threads"):
        Model.load(MODEL, threads=0)
    with pytest.raises(ValueError, match="no such file"):
        model.ask("What is it?", images=[str(tmp_path / "missing.jpg")])
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ValueError, match="not a readable image"):
        model.ask("What is it?", images=[tmp_path / "notes.txt"])
    with pytest.raises(ValueError, match="1-D array"):
        model.ask("What is it?", audio=[np.zeros((2, 100), np.float32)])
    with pytest.raises(ValueError, match="lists"):
        model.ask("What is it?", images=str(MODEL / "examples" / "garage.png"))  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="not both"):
        model.reply("x", schema={"type": "boolean"}, tools=[{"name": "clock", "description": "Time."}])
    with pytest.raises(TypeError, match="unknown option"):
        model.reply("x", temperature=0.5)  # type: ignore[typeddict-unknown-key]
    with Model.load(MODELS / "tiny-gemma4-b") as blind, pytest.raises(ValueError, match="cannot see images"):
        blind.ask("What is it?", images=[MODEL / "examples" / "garage.png"])
