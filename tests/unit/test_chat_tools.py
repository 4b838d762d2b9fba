"""Tool declarations, calls and responses equal the published template's rendering; calls parse back."""

# ruff: noqa: E501  (the golden prompts are kept on one line each, as the template renders them)

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.messages import ToolCall, ToolResponse, ToolSpec
from edge_agent.prompt.chat import Message, render_prompt
from edge_agent.prompt.tool_syntax import ToolCallParseError, format_call, parse_tool_calls

PARAMS = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": ["ON", "OFF"], "description": "Light state"},
        "brightness": {"type": "integer", "description": "0-255"},
        "level": {"type": "number"},
        "fade": {"type": "boolean", "nullable": True},
        "rooms": {"type": "array", "items": {"type": "string"}, "description": "Rooms"},
        "color": {
            "type": "object",
            "properties": {"r": {"type": "integer"}, "g": {"type": "integer"}},
            "required": ["r"],
        },
        "notes": {"type": ["string", "null"]},
    },
    "required": ["state"],
}
TOOLS = [
    ToolSpec("set_light", "Switch a light.", PARAMS),
    ToolSpec("get_time", "The time.", {"type": "object", "properties": {}}),
]
ARGS: dict[str, Any] = {
    "state": "ON", "brightness": 128, "level": 0.5, "fade": True, "rooms": ["kitchen", "hall"],
    "color": {"r": 1, "g": 2}, "notes": None,
}  # fmt: skip

# Rendered from the published Gemma 4 chat_template.jinja with jinja2 (trim_blocks, lstrip_blocks), with the same
# tools given as {"type": "function", "function": {...}} and tool calls/responses in transformers' message form.
# It keeps the template's quirks: "{,properties:" for a nested object without a description, and no comma
# between a nested object's "required" list and its "type".
TOOL_GOLDEN = {
    "tools": (
        '<bos><|turn>system\n<|tool>declaration:set_light{description:<|"|>Switch a light.<|"|>,parameters:{properties:{brightness:{description:<|"|>0-255<|"|>,type:<|"|>INTEGER<|"|>},color:{,properties:{g:{type:<|"|>INTEGER<|"|>},r:{type:<|"|>INTEGER<|"|>}},required:[<|"|>r<|"|>]type:<|"|>OBJECT<|"|>},fade:{nullable:true,type:<|"|>BOOLEAN<|"|>},level:{type:<|"|>NUMBER<|"|>},notes:{type:<|"|>STRING<|"|>},rooms:{description:<|"|>Rooms<|"|>,items:{type:<|"|>STRING<|"|>},type:<|"|>ARRAY<|"|>},state:{description:<|"|>Light state<|"|>,enum:[<|"|>ON<|"|>,<|"|>OFF<|"|>],type:<|"|>STRING<|"|>}},required:[<|"|>state<|"|>],type:<|"|>OBJECT<|"|>}}<tool|><|tool>declaration:get_time{description:<|"|>The time.<|"|>,parameters:{type:<|"|>OBJECT<|"|>}}<tool|><turn|>\n<|turn>user\nLight on<turn|>\n<|turn>model\n<|channel>thought\n<channel|>'
    ),
    "tools+system+think": (
        '<bos><|turn>system\n<|think|>Be brief.<|tool>declaration:set_light{description:<|"|>Switch a light.<|"|>,parameters:{properties:{brightness:{description:<|"|>0-255<|"|>,type:<|"|>INTEGER<|"|>},color:{,properties:{g:{type:<|"|>INTEGER<|"|>},r:{type:<|"|>INTEGER<|"|>}},required:[<|"|>r<|"|>]type:<|"|>OBJECT<|"|>},fade:{nullable:true,type:<|"|>BOOLEAN<|"|>},level:{type:<|"|>NUMBER<|"|>},notes:{type:<|"|>STRING<|"|>},rooms:{description:<|"|>Rooms<|"|>,items:{type:<|"|>STRING<|"|>},type:<|"|>ARRAY<|"|>},state:{description:<|"|>Light state<|"|>,enum:[<|"|>ON<|"|>,<|"|>OFF<|"|>],type:<|"|>STRING<|"|>}},required:[<|"|>state<|"|>],type:<|"|>OBJECT<|"|>}}<tool|><|tool>declaration:get_time{description:<|"|>The time.<|"|>,parameters:{type:<|"|>OBJECT<|"|>}}<tool|><turn|>\n<|turn>user\nLight on<turn|>\n<|turn>model\n'
    ),
    "call+response": (
        '<bos><|turn>system\n<|tool>declaration:set_light{description:<|"|>Switch a light.<|"|>,parameters:{properties:{brightness:{description:<|"|>0-255<|"|>,type:<|"|>INTEGER<|"|>},color:{,properties:{g:{type:<|"|>INTEGER<|"|>},r:{type:<|"|>INTEGER<|"|>}},required:[<|"|>r<|"|>]type:<|"|>OBJECT<|"|>},fade:{nullable:true,type:<|"|>BOOLEAN<|"|>},level:{type:<|"|>NUMBER<|"|>},notes:{type:<|"|>STRING<|"|>},rooms:{description:<|"|>Rooms<|"|>,items:{type:<|"|>STRING<|"|>},type:<|"|>ARRAY<|"|>},state:{description:<|"|>Light state<|"|>,enum:[<|"|>ON<|"|>,<|"|>OFF<|"|>],type:<|"|>STRING<|"|>}},required:[<|"|>state<|"|>],type:<|"|>OBJECT<|"|>}}<tool|><|tool>declaration:get_time{description:<|"|>The time.<|"|>,parameters:{type:<|"|>OBJECT<|"|>}}<tool|><turn|>\n<|turn>user\nLight on<turn|>\n<|turn>model\n<|tool_call>call:set_light{brightness:128,color:{g:2,r:1},fade:true,level:0.5,notes:None,rooms:[<|"|>kitchen<|"|>,<|"|>hall<|"|>],state:<|"|>ON<|"|>}<tool_call|><turn|>\n<|turn>tool\n<|tool_response>response:set_light{ok:true,state:<|"|>ON<|"|>}<tool_response|><|channel>thought\n<channel|>'
    ),
    "response scalar then answer": (
        '<bos><|turn>system\n<|tool>declaration:set_light{description:<|"|>Switch a light.<|"|>,parameters:{properties:{brightness:{description:<|"|>0-255<|"|>,type:<|"|>INTEGER<|"|>},color:{,properties:{g:{type:<|"|>INTEGER<|"|>},r:{type:<|"|>INTEGER<|"|>}},required:[<|"|>r<|"|>]type:<|"|>OBJECT<|"|>},fade:{nullable:true,type:<|"|>BOOLEAN<|"|>},level:{type:<|"|>NUMBER<|"|>},notes:{type:<|"|>STRING<|"|>},rooms:{description:<|"|>Rooms<|"|>,items:{type:<|"|>STRING<|"|>},type:<|"|>ARRAY<|"|>},state:{description:<|"|>Light state<|"|>,enum:[<|"|>ON<|"|>,<|"|>OFF<|"|>],type:<|"|>STRING<|"|>}},required:[<|"|>state<|"|>],type:<|"|>OBJECT<|"|>}}<tool|><|tool>declaration:get_time{description:<|"|>The time.<|"|>,parameters:{type:<|"|>OBJECT<|"|>}}<tool|><turn|>\n<|turn>user\nTime?<turn|>\n<|turn>model\n<|tool_call>call:get_time{}<tool_call|><turn|>\n<|turn>tool\n<|tool_response>response:get_time{value:<|"|>19:30<|"|>}<tool_response|><|turn>model\nIt is 19:30.<turn|>\n<|turn>user\nThanks<turn|>\n<|turn>model\n<|channel>thought\n<channel|>'
    ),
}

CASES = {
    "tools": ([Message("user", "Light on")], {}),
    "tools+system+think": ([Message("system", "Be brief."), Message("user", "Light on")], {"thinking": True}),
    "call+response": (
        [
            Message("user", "Light on"),
            Message("model", tool_calls=(ToolCall("set_light", ARGS),)),
            Message("tool", tool_responses=(ToolResponse("set_light", {"ok": True, "state": "ON"}),)),
        ],
        {},
    ),
    "response scalar then answer": (
        [
            Message("user", "Time?"),
            Message("model", tool_calls=(ToolCall("get_time", {}),)),
            Message("tool", tool_responses=(ToolResponse("get_time", "19:30"),)),
            Message("model", "It is 19:30."),
            Message("user", "Thanks"),
        ],
        {},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tool_prompts_equal_the_published_template(name: str) -> None:
    messages, options = CASES[name]
    assert render_prompt(messages, TOOLS, **options) == TOOL_GOLDEN[name]


def test_parse_a_generated_call() -> None:
    text = 'Sure.<|tool_call>call:set_light{brightness:128,rooms:[<|"|>kitchen<|"|>],state:<|"|>ON<|"|>}<tool_call|>'
    assert parse_tool_calls(text) == [ToolCall("set_light", {"brightness": 128, "rooms": ["kitchen"], "state": "ON"})]
    assert parse_tool_calls("no call here") == []
    assert parse_tool_calls(format_call(ToolCall("set_light", ARGS))) == [ToolCall("set_light", ARGS)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('<|tool_call>call:x{a:<|"|>open}<tool_call|>', "unterminated string"),
        ("<|tool_call>call:x{a:1<tool_call|>", "unterminated object"),
        ("<|tool_call>call:x{a:1 b:2}<tool_call|>", "expected ','"),
        ("<|tool_call>x{a:1}<tool_call|>", "without 'call:NAME{'"),
        ("<|tool_call>call:x{a:1} trailing<tool_call|>", "unexpected text after the arguments"),
        ("<|tool_call>call:x{a:@}<tool_call|>", "expected a value"),
        ("<|tool_call>call:x{a:1}", "not finished"),
    ],
)
def test_malformed_calls_are_a_clear_parse_error(text: str, message: str) -> None:
    with pytest.raises(ToolCallParseError, match=message):
        parse_tool_calls(text)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(st.characters(blacklist_characters='<|"'), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), JSON_VALUES, max_size=4))
def test_render_then_parse_round_trips(arguments: dict[str, Any]) -> None:
    assert parse_tool_calls(format_call(ToolCall("tool_1", arguments))) == [ToolCall("tool_1", arguments)]


PIECES = st.sampled_from([*'<|>tool_call:{}[],"x1 ', "<|tool_call>", "<tool_call|>", '<|"|>', "call:f{"])


@settings(max_examples=500, deadline=None)
@given(st.lists(PIECES, max_size=20).map("".join))
def test_arbitrary_text_parses_or_raises_the_documented_error(text: str) -> None:
    with contextlib.suppress(ToolCallParseError):
        parse_tool_calls(text)
