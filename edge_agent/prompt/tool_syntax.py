"""Gemma 4 tool syntax: declarations, calls and responses written as the chat template writes them, and
tool calls parsed back out of generated text."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.messages import ToolCall, ToolResponse, ToolSpec

QUOTE = '<|"|>'
_STANDARD_KEYS = ("description", "type", "properties", "required", "nullable")


def _scalar(value: Any) -> str:
    if value is None:
        return "None"  # what the template (Jinja) prints for a null
    return str(value)


def format_argument(value: Any, escape_keys: bool = True) -> str:
    """A value in the template's argument syntax (strings quoted with <|"|>, keys sorted)."""
    if isinstance(value, str):
        return f"{QUOTE}{value}{QUOTE}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        items = [
            (f"{QUOTE}{key}{QUOTE}" if escape_keys else str(key)) + ":" + format_argument(item, escape_keys)
            for key, item in sorted(value.items())
        ]
        return "{" + ",".join(items) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(format_argument(item, escape_keys) for item in value) + "]"
    return _scalar(value)


def _quoted_list(items: Sequence[str]) -> str:
    return ",".join(f"{QUOTE}{item}{QUOTE}" for item in items)


def _format_items(items: Mapping[str, Any]) -> str:
    parts = []
    for key, value in sorted(items.items()):
        if value is None:
            continue
        if key == "properties":
            inner = format_parameters(value, items.get("required", [])) if isinstance(value, Mapping) else ""
            parts.append("properties:{" + inner + "}")
        elif key == "required":
            parts.append("required:[" + _quoted_list(value) + "]")
        elif key == "type":
            parts.append(
                "type:" + format_argument(value.upper() if isinstance(value, str) else [v.upper() for v in value])
            )
        else:
            parts.append(f"{key}:{format_argument(value)}")
    return ",".join(parts)


def format_parameters(properties: Mapping[str, Any], required: Sequence[str] = ()) -> str:
    """The `properties` of a JSON schema in the template's declaration syntax."""
    out = []
    for key, value in sorted(properties.items()):
        if key in _STANDARD_KEYS:
            continue  # the template skips properties named like schema keywords
        text, comma = f"{key}:{{", False
        if value.get("description"):
            text, comma = text + f"description:{QUOTE}{value['description']}{QUOTE}", True
        if value.get("nullable"):
            text, comma = text + ("," if comma else "") + "nullable:true", True
        kind = value["type"] if isinstance(value.get("type"), str) else value.get("type", [""])[0]
        if kind.upper() == "STRING" and value.get("enum"):
            text, comma = text + ("," if comma else "") + "enum:" + format_argument(value["enum"]), True
        elif kind.upper() == "OBJECT":
            nested = value["properties"] if isinstance(value.get("properties"), Mapping) else value
            text += ",properties:{" + format_parameters(nested, value.get("required", [])) + "}"
            if value.get("required"):
                text += ",required:[" + _quoted_list(value["required"]) + "]"
        elif kind.upper() == "ARRAY" and isinstance(value.get("items"), Mapping) and value["items"]:
            text += ",items:{" + _format_items(value["items"]) + "}"
        text += ("," if comma else "") + f"type:{QUOTE}{kind.upper()}{QUOTE}}}"
        out.append(text)
    return ",".join(out)


def format_declaration(tool: ToolSpec) -> str:
    """`<|tool>declaration:NAME{...}<tool|>` for the system turn."""
    text = f"declaration:{tool.name}{{description:{QUOTE}{tool.description}{QUOTE}"
    params = tool.parameters
    if params:
        text += ",parameters:{"
        if params.get("properties"):
            text += "properties:{" + format_parameters(params["properties"], params.get("required", [])) + "},"
        if params.get("required"):
            text += "required:[" + _quoted_list(params["required"]) + "],"
        if params.get("type"):
            text += f"type:{QUOTE}{str(params['type']).upper()}{QUOTE}}}"
    return "<|tool>" + (text + "}").strip() + "<tool|>"


def format_call(call: ToolCall) -> str:
    """`<|tool_call>call:NAME{key:value,...}<tool_call|>`."""
    args = ",".join(
        f"{key}:{format_argument(value, escape_keys=False)}" for key, value in sorted(call.arguments.items())
    )
    return f"<|tool_call>call:{call.name}{{{args}}}<tool_call|>"


def format_response(response: ToolResponse) -> str:
    """`<|tool_response>response:NAME{...}<tool_response|>`."""
    if isinstance(response.response, Mapping):
        body = ",".join(
            f"{key}:{format_argument(value, escape_keys=False)}" for key, value in sorted(response.response.items())
        )
    else:
        body = "value:" + format_argument(response.response, escape_keys=False)
    return f"<|tool_response>response:{response.name}{{{body}}}<tool_response|>"


class ToolCallParseError(ValueError):
    """Generated text that looks like a tool call but is not a well-formed one."""


_CALL = re.compile(r"<\|tool_call>(.*?)<tool_call\|>", re.DOTALL)
_NAME = re.compile(r"call:([A-Za-z_][A-Za-z0-9_.-]*)\{")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Reader:
    """A recursive-descent reader of the template's argument syntax."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, what: str) -> ToolCallParseError:
        return ToolCallParseError(f"{what} at character {self.pos} of {self.text!r}")

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise self.fail(f"expected {token!r}")
        self.pos += len(token)

    def value(self) -> Any:
        text, pos = self.text, self.pos
        if text.startswith(QUOTE, pos):
            end = text.find(QUOTE, pos + len(QUOTE))
            if end < 0:
                raise self.fail("unterminated string")
            self.pos = end + len(QUOTE)
            return text[pos + len(QUOTE) : end]
        if text.startswith("{", pos):
            return self.mapping()
        if text.startswith("[", pos):
            self.pos += 1
            items: list[Any] = []
            while not self.text.startswith("]", self.pos):
                if items:
                    self.expect(",")
                items.append(self.value())
            self.pos += 1
            return items
        for word, meaning in (("true", True), ("false", False), ("None", None), ("null", None)):
            if text.startswith(word, pos):
                self.pos += len(word)
                return meaning
        number = _NUMBER.match(text, pos)
        if number:
            self.pos = number.end()
            return float(number.group()) if number.group(1) or number.group(2) else int(number.group())
        raise self.fail("expected a value")

    def mapping(self) -> dict[str, Any]:
        self.expect("{")
        result: dict[str, Any] = {}
        while not self.text.startswith("}", self.pos):
            if self.pos >= len(self.text):
                raise self.fail("unterminated object")
            if result:
                self.expect(",")
            if self.text.startswith(QUOTE, self.pos):
                key = self.value()
            else:
                bare = _BARE.match(self.text, self.pos)
                if bare is None:
                    raise self.fail("expected a key")
                key, self.pos = bare.group(), bare.end()
            self.expect(":")
            result[str(key)] = self.value()
        self.pos += 1
        return result


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every `<|tool_call>...<tool_call|>` in generated text; ToolCallParseError when one is malformed."""
    calls = []
    for match in _CALL.finditer(text):
        body = match.group(1)
        name = _NAME.match(body)
        if name is None:
            raise ToolCallParseError(f"tool call without 'call:NAME{{': {body!r}")
        reader = _Reader(body)
        reader.pos = name.end() - 1
        arguments = reader.mapping()
        if reader.pos != len(body):
            raise reader.fail("unexpected text after the arguments")
        calls.append(ToolCall(name.group(1), arguments))
    if "<|tool_call>" in _CALL.sub("", text):
        raise ToolCallParseError("a tool call was started but not finished (no <tool_call|>)")
    return calls
