"""Structured output on the tiny Gemma 4 fixture: the real decode loop with llguidance constraints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from edge_agent.messages import ToolCall, ToolSpec
from edge_agent.model.runtime.constrain import ConstraintError, ConstraintFactory, ToolCallConstraint
from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.generate import GenerationSettings, TokenConstraint, generate
from edge_agent.model.runtime.sampling import SamplingParams
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model
from edge_agent.prompt.chat import Message, render_prompt
from edge_agent.prompt.tool_syntax import ToolCallParseError, format_call, parse_tool_calls

MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-gemma4"
FILES = locate_model(MODEL, "fp32")
TOKENIZER = Tokenizer(MODEL)
TURN_END = TOKENIZER.token_id("<turn|>")
SAMPLINGS = [SamplingParams()] + [SamplingParams(temperature=1.0, seed=seed) for seed in range(6)]
SCHEMAS: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "enum": {"enum": ["open", "closed", 3, None]},
    "integer": {"type": "integer", "minimum": -20, "maximum": 150},
    "string": {"type": "string", "maxLength": 8},
    "object": {
        "type": "object",
        "properties": {
            "door": {"enum": ["open", "closed"]},
            "people": {"type": "integer", "minimum": 0, "maximum": 9},
            "lit": {"type": "boolean"},
            "note": {"type": "string", "maxLength": 6},
        },
        "required": ["door", "people", "lit"],
        "additionalProperties": False,
    },
}
LIGHT = ToolSpec(
    "set_light",
    "Switch a light",
    {
        "type": "object",
        "properties": {
            "room": {"type": "string", "enum": ["kitchen", "hall"]},
            "on": {"type": "boolean"},
            "level": {"type": "integer", "minimum": 0, "maximum": 100},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "at": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x"],
            },
        },
        "required": ["room", "on"],
    },
)
NOTE = ToolSpec(
    "note",
    "Remember",
    {
        "type": "object",
        "properties": {"text": {"type": "string"}, "keep-days": {"type": ["integer", "null"], "maximum": 30}},
        "required": ["text"],
    },
)
TOOLS = (LIGHT, NOTE, ToolSpec("ping", "No arguments"))


@pytest.fixture(scope="module")
def engine() -> TextEngine:
    return TextEngine(FILES)


@pytest.fixture(scope="module")
def factory() -> ConstraintFactory:
    return ConstraintFactory(TOKENIZER, FILES.tokenizer_json, FILES.info.vocab_size)


def answer(engine: TextEngine, sampling: SamplingParams, constraint: TokenConstraint | None) -> tuple[str, str]:
    prompt = TOKENIZER.encode(render_prompt([Message("user", "Is the garage door open? Answer in JSON.")]))
    settings = GenerationSettings(
        max_new_tokens=64,
        eos_token_ids=frozenset(FILES.generation.eos_token_ids),
        sampling=sampling,
        constraint=constraint,
    )
    result = generate(engine, prompt, settings, TOKENIZER.stream())
    return result.text, result.finish_reason


def valid(text: str, schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


@pytest.mark.parametrize("name", SCHEMAS)
def test_constrained_answers_are_always_valid_json(engine: TextEngine, factory: ConstraintFactory, name: str) -> None:
    schema = SCHEMAS[name]
    for sampling in SAMPLINGS:
        text, reason = answer(engine, sampling, factory.json_answer(schema))
        assert reason == "eos", (sampling, text)  # ended by <turn|>, which the grammar allows only after a document
        assert valid(text, schema), (sampling, text)


@pytest.mark.parametrize("name", SCHEMAS)
def test_the_random_model_alone_does_not_answer_in_json(engine: TextEngine, name: str) -> None:
    texts = [answer(engine, sampling, None)[0] for sampling in SAMPLINGS]
    assert not any(valid(text, SCHEMAS[name]) for text in texts), texts


def test_the_json_constraint_ends_with_the_end_of_turn_token(factory: ConstraintFactory) -> None:
    constraint = factory.json_answer({"type": "boolean"})
    for token in TOKENIZER.encode("true"):
        assert not constraint.finished()
        constraint.advance(token)
    mask = constraint.allowed()
    assert mask is not None and np.flatnonzero(mask).tolist() == [TURN_END]
    constraint.advance(TURN_END)
    assert constraint.finished()


def test_in_thinking_mode_the_json_starts_after_the_thought_channel(factory: ConstraintFactory) -> None:
    constraint = factory.json_answer({"type": "boolean"}, after_thought=True)
    for token in TOKENIZER.encode("<|channel>thought\nthe door looks open, so: maybe"):
        assert constraint.allowed() is None  # any token while thinking
        constraint.advance(token)
    constraint.advance(TOKENIZER.token_id("<channel|>"))
    mask = constraint.allowed()
    assert mask is not None and not mask[TOKENIZER.encode("x")[0]]
    for token in TOKENIZER.encode("false"):
        constraint.advance(token)
    constraint.advance(TURN_END)
    assert constraint.finished()


def test_a_token_the_grammar_rejects_raises(factory: ConstraintFactory) -> None:
    constraint = factory.json_answer({"type": "integer"})
    with pytest.raises(ConstraintError, match="rejects token"):
        constraint.advance(TOKENIZER.encode("x")[0])
    with pytest.raises(ValueError, match="minimum"):
        factory.json_answer({"type": "integer", "minimum": 5, "maximum": 1})


def test_constraints_from_one_factory_are_independent(factory: ConstraintFactory) -> None:
    first, second = factory.json_answer({"type": "boolean"}), factory.json_answer({"type": "boolean"})
    first.advance(TOKENIZER.encode("t")[0])
    mask = second.allowed()
    assert mask is not None and mask[TOKENIZER.encode("f")[0]]


class ToolCallingModel:
    """Random logits from a seeded generator; `<|tool_call>` first, closing markers slightly favoured."""

    def __init__(self, seed: int) -> None:
        self.rng, self.steps = np.random.default_rng(seed), 0
        self.favoured = TOKENIZER.encode('<|"|><tool_call|>}]')

    def forward(self, input_ids: Sequence[int], cache: Any = None) -> tuple[np.ndarray, Any]:
        self.steps += 1
        logits = self.rng.normal(0.0, 2.0, FILES.info.vocab_size).astype(np.float32)
        logits[self.favoured] += 4.0
        if self.steps == 1:
            logits[TOKENIZER.token_id("<|tool_call>")] = 50.0
        return logits, None


def call_text(seed: int, constraint: TokenConstraint | None) -> str:
    settings = GenerationSettings(
        max_new_tokens=160, sampling=SamplingParams(temperature=1.0, seed=seed), constraint=constraint
    )
    result = generate(ToolCallingModel(seed), [TOKENIZER.bos_id], settings, TOKENIZER.stream(False))
    return TOKENIZER.decode(result.ids, skip_special_tokens=False)


def test_constrained_tool_calls_name_a_tool_and_valid_arguments(factory: ConstraintFactory) -> None:
    declared = {tool.name: tool for tool in TOOLS}
    called = set()
    for seed in range(40):
        text = call_text(seed, factory.tool_calls(TOOLS))
        calls = parse_tool_calls(text)
        assert calls, text
        for call in calls:
            jsonschema.validate(dict(call.arguments), declared[call.name].parameters)
            called.add(call.name)
    assert called == set(declared)


def test_unconstrained_tool_calls_of_the_random_model_are_broken() -> None:
    for seed in range(10):
        with pytest.raises(ToolCallParseError):
            parse_tool_calls(call_text(seed, None))


def feed(constraint: ToolCallConstraint, text: str) -> None:
    for token in TOKENIZER.encode(text):
        constraint.advance(token)


@pytest.mark.parametrize(
    "call",
    [
        ToolCall("set_light", {"room": "hall", "on": True}),
        ToolCall("set_light", {"room": "kitchen", "on": False, "level": 0, "tags": ["a b", ""], "at": {"x": -1.5}}),
        ToolCall("note", {"text": 'say "hi" {now}, <b>'}),
        ToolCall("note", {"text": "x", '<|"|>keep-days<|"|>': None}),  # a key that is not bare is quoted
        ToolCall("ping", {}),
    ],
)
def test_calls_as_the_template_writes_them_are_accepted(factory: ConstraintFactory, call: ToolCall) -> None:
    constraint = factory.tool_calls(TOOLS)
    feed(constraint, "Sure. ")
    assert constraint.allowed() is None
    feed(constraint, format_call(call))
    assert not constraint.in_call and constraint.allowed() is None  # free text again


@pytest.mark.parametrize(
    "text",
    [
        "call:set_lamp{}",  # not a declared tool
        "call:set_light{on:true}",  # required room missing
        'call:set_light{on:true,room:<|"|>attic<|"|>}',  # not in the enum
        'call:set_light{on:true,room:<|"|>hall<|"|>,colour:',  # unknown property
        'call:set_light{on:1,room:<|"|>hall<|"|>}',  # wrong type
        'call:set_light{level:101,on:true,room:<|"|>hall<|"|>}',  # above the maximum
        'call:set_light{room:<|"|>hall<|"|>,on:true}',  # not in the template's (sorted) order
    ],
)
def test_calls_outside_the_declarations_are_rejected(factory: ConstraintFactory, text: str) -> None:
    constraint = factory.tool_calls(TOOLS)
    constraint.advance(TOKENIZER.token_id("<|tool_call>"))
    assert constraint.in_call
    with pytest.raises(ConstraintError, match="rejects token"):
        feed(constraint, text)


def test_a_string_cannot_spell_the_quote_token_in_plain_text(factory: ConstraintFactory) -> None:
    constraint = factory.tool_calls(TOOLS)
    constraint.advance(TOKENIZER.token_id("<|tool_call>"))
    feed(constraint, 'call:note{text:<|"|>a<|"|')  # the last four characters as ordinary tokens
    with pytest.raises(ConstraintError, match="rejects token"):
        feed(constraint, ">")  # would make parse_tool_calls see the closing quote
