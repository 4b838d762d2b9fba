"""JSON-schema tool parameters to the Lark grammar of Gemma 4 tool calls (the pure conversion)."""

from __future__ import annotations

from typing import Any

import llguidance
import pytest

from edge_agent.messages import ToolSpec
from edge_agent.prompt.tool_grammar import ToolSchemaError, tool_call_grammar

QUOTE_ID, END_ID = 13, 10
LIGHT = ToolSpec(
    "set_light",
    "Switch a light",
    {
        "type": "object",
        "properties": {
            "room": {"type": "string", "enum": ["kitchen", "hall"], "description": "where"},
            "on": {"type": "boolean"},
            "level": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        "required": ["room", "on"],
    },
)


def grammar(*tools: ToolSpec) -> str:
    return tool_call_grammar(tools, QUOTE_ID, END_ID)


def test_a_tool_becomes_call_name_args_and_the_end_token() -> None:
    text = grammar(LIGHT, ToolSpec("ping", "no arguments"))
    lines = text.splitlines()
    assert lines[0] == 'start: "call:" ("set_light" r4 | "ping" r5) <[10]>'
    assert "r0: %json {" in text and '"minimum": 0, "maximum": 100' in text  # numbers are JSON numbers
    assert 'r1: "true" | "false"' in lines
    assert 'r2: <[13]> "kitchen" <[13]> | <[13]> "hall" <[13]>' in lines
    # Keys in sorted order as format_call writes them; `level` is optional and may come first.
    assert 'r3: "level:" r0 "," "on:" r1 "," "room:" r2 | "on:" r1 "," "room:" r2' in lines
    assert 'r4: "{" r3 "}"' in lines
    assert 'r5: "{}"' in lines
    assert lines[-1].startswith("STR: ")


def test_optional_members_may_all_be_left_out() -> None:
    tool = ToolSpec("f", "", {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}})
    lines = grammar(tool).splitlines()
    assert any(line.endswith(': "a:" r0 ("," "b:" r1)? | "b:" r1') for line in lines)
    assert any(line.endswith('"{" r2? "}"') for line in lines)


NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "pos": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
        "my-key": {"type": ["integer", "null"]},
    },
    "required": ["tags", "pos", "my-key"],
}


def test_arrays_nested_objects_odd_keys_and_null() -> None:
    text = grammar(ToolSpec("f", "", NESTED))
    assert '"[" r' in text and '{0,2} "]"' in text  # one item, then up to two more
    assert '<[13]> "my-key" <[13]> ":"' in text  # not a bare key: quoted like format_argument quotes keys
    assert '"None"' in text
    assert '"pos:"' in text and '"x:"' in text


def test_every_grammar_compiles_in_llguidance() -> None:
    params = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "boolean"}}}}
    for tools in ([LIGHT], [ToolSpec("f", "", params)], [ToolSpec("g", "")], [ToolSpec("h", "", NESTED)]):
        assert llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(grammar(*tools))) == ""


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"city": {"type": "string", "pattern": "^[A-Z]"}}, ["'pattern'", "'string'", "city"]),
        ({"when": {"type": "string", "format": "date"}}, ["'format'"]),
        ({"x": {"anyOf": [{"type": "string"}]}}, ["'anyOf'", "x"]),
        ({"x": {"description": "no type"}}, ["'type'", "x"]),
        ({"x": {"type": "array"}}, ["without 'items'"]),
        ({"x": {"type": "integer", "multipleOf": 2}}, ["'multipleOf'"]),
        ({"x": {"type": "object", "additionalProperties": {"type": "string"}}}, ["'additionalProperties'"]),
        ({"x": {"type": "string", "enum": ["a", 1]}}, ["'enum'"]),
        ({"x": {"type": "date"}}, ["unsupported type 'date'"]),
    ],
)
def test_unsupported_schema_names_the_tool_and_the_keyword(schema: dict[str, Any], words: list[str]) -> None:
    tool = ToolSpec("lookup", "", {"type": "object", "properties": schema})
    with pytest.raises(ValueError, match="tool 'lookup'") as caught:
        grammar(tool)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_bad_tool_lists_are_refused() -> None:
    with pytest.raises(ToolSchemaError, match="no tools"):
        grammar()
    with pytest.raises(ToolSchemaError, match="not a Gemma tool name"):
        grammar(ToolSpec("two words", ""))
    with pytest.raises(ToolSchemaError, match="type 'object'"):
        grammar(ToolSpec("f", "", {"type": "string"}))
    with pytest.raises(ToolSchemaError, match="required properties without a schema"):
        grammar(ToolSpec("f", "", {"type": "object", "properties": {}, "required": ["a"]}))
    with pytest.raises(ToolSchemaError, match="containing"):
        grammar(ToolSpec("f", "", {"type": "object", "properties": {"a": {"type": "string", "enum": ['<|"|>']}}}))
