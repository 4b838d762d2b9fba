"""Tool declarations (JSON-schema `parameters`) to a Lark grammar of Gemma 4's `call:NAME{ARGS}` syntax."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.messages import ToolSpec
from edge_agent.prompt.tool_syntax import QUOTE

_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment", "nullable"})
_KEYWORDS: dict[str, frozenset[str]] = {
    "string": frozenset({"type", "enum", "const"}),
    "integer": frozenset({"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
    "boolean": frozenset({"type"}),
    "null": frozenset({"type"}),
    "array": frozenset({"type", "items", "minItems", "maxItems"}),
    "object": frozenset({"type", "properties", "required", "additionalProperties"}),
}
_KEYWORDS["number"] = _KEYWORDS["integer"]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_RULE = re.compile(r"r[0-9]+")
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Text inside <|"|>...<|"|>: anything that does not spell the closing quote or the end of the call.
_STRING_TERMINAL = r'STR: /(?s:.*)/ & ~/(?s:.*)(<\|"\|>|<tool_call\|>)(?s:.*)/'


class ToolSchemaError(ValueError):
    """A tool's parameters use JSON schema the tool-call grammar cannot express."""


@dataclass
class _Builder:
    """Collects Lark rules while walking one tool's schema."""

    tool: str
    quote: str
    rules: list[str]

    def fail(self, where: str, problem: str) -> ToolSchemaError:
        return ToolSchemaError(f"tool {self.tool!r}: {problem} at {where or 'parameters'}")

    def rule(self, body: str) -> str:
        name = f"r{len(self.rules)}"
        self.rules.append(f"{name}: {body}")
        return name

    def literal(self, text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    def value(self, schema: Any, where: str) -> str:
        if not isinstance(schema, Mapping):
            raise self.fail(where, "a schema that is not an object")
        kind = schema.get("type", "object" if "properties" in schema else None)
        if kind is None and (unknown := [key for key in schema if key not in _ANNOTATIONS]):
            raise self.fail(where, f"unsupported keyword {unknown[0]!r} (and no 'type')")
        kinds = [kind] if isinstance(kind, str) else kind
        if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
            raise self.fail(where, "a missing or unusable 'type'")
        for kind in kinds:
            if kind not in _KEYWORDS:
                raise self.fail(where, f"unsupported type {kind!r}")
        known = set().union(*(_KEYWORDS[k] for k in kinds))
        for key in schema:
            if key not in known and key not in _ANNOTATIONS:
                raise self.fail(where, f"unsupported keyword {key!r} (for type {' or '.join(map(repr, kinds))})")
        bodies = [self.typed(schema, k, where) for k in kinds]
        return bodies[0] if len(bodies) == 1 and _RULE.fullmatch(bodies[0]) else self.rule(" | ".join(bodies))

    def typed(self, schema: Mapping[str, Any], kind: str, where: str) -> str:
        if kind == "string":
            return self.string(schema, where)
        if kind in ("integer", "number"):
            # Gemma writes numbers as JSON does, so llguidance's JSON number grammar applies as is.
            numeric = {k: v for k, v in schema.items() if k in _KEYWORDS[kind]} | {"type": kind}
            numeric["x-guidance"] = {"whitespace_flexible": False}
            return self.rule("%json " + json.dumps(numeric))
        if kind == "boolean":
            return '"true" | "false"'
        if kind == "null":
            return '"None"'
        if kind == "array":
            return self.array(schema, where)
        return self.object(schema, where)

    def string(self, schema: Mapping[str, Any], where: str) -> str:
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else schema["enum"]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or not values:
                raise self.fail(where, "a string 'enum' that is not a list of strings")
            if any(QUOTE in v or "<tool_call|>" in v for v in values):
                raise self.fail(where, f"an enum value containing {QUOTE}")
            return " | ".join(f"{self.quote} {self.literal(v) if v else ''} {self.quote}" for v in values)
        return f"{self.quote} STR? {self.quote}"

    def array(self, schema: Mapping[str, Any], where: str) -> str:
        if "items" not in schema:
            raise self.fail(where, "an array without 'items'")
        item = self.value(schema["items"], f"{where}[]")
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        if not isinstance(low, int) or not (high is None or (isinstance(high, int) and high >= max(low, 1))):
            raise self.fail(where, "unusable 'minItems'/'maxItems'")
        more = f'("," {item}){{{max(low - 1, 0)},{"" if high is None else high - 1}}}'
        items = f"{item} {more}"
        return f'"[" {items} "]"' if low > 0 else f'"[" ({items})? "]"'

    def object(self, schema: Mapping[str, Any], where: str) -> str:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", False)
        if not isinstance(properties, Mapping) or not isinstance(required, list):
            raise self.fail(where, "unusable 'properties' or 'required'")
        if not isinstance(extra, bool):
            raise self.fail(where, "unsupported keyword 'additionalProperties' (only true/false)")
        if missing := [name for name in required if name not in properties]:
            raise self.fail(where, f"required properties without a schema {missing}")
        members = []  # keys sorted, as format_call writes them
        for name in sorted(properties):
            key = name if _BARE_KEY.fullmatch(name) else None
            if key is None and (QUOTE in name or "<tool_call|>" in name):
                raise self.fail(where, f"a property name containing {QUOTE}")
            label = self.literal(f"{key}:") if key else f'{self.quote} {self.literal(name)} {self.quote} ":"'
            value = self.value(properties[name], f"{where}.{name}" if where else name)
            members.append((f"{label} {value}", name in required))
        if not members:
            return '"{}"'
        body = self.members(members)
        return f'"{{" {body} "}}"' if any(needed for _, needed in members) else f'"{{" {body}? "}}"'

    def members(self, members: list[tuple[str, bool]]) -> str:
        """One or more members in order, comma-separated: the required ones always, each optional one or not."""
        choices = []
        for first, (member, needed) in enumerate(members):
            rest = [f'"," {m}' if later else f'("," {m})?' for m, later in members[first + 1 :]]
            choices.append(" ".join([member, *rest]))
            if needed:
                break  # nothing after a required member can come first
        return self.rule(" | ".join(choices))


def tool_call_grammar(tools: Sequence[ToolSpec], quote_id: int, end_id: int) -> str:
    """Lark grammar of `call:NAME{ARGS}<tool_call|>` (the text after `<|tool_call>`) for these tools."""
    if not tools:
        raise ToolSchemaError("no tools to call")
    rules: list[str] = []
    calls = []
    for tool in tools:
        if not _NAME.fullmatch(tool.name):
            raise ToolSchemaError(f"tool {tool.name!r}: the name is not a Gemma tool name ({_NAME.pattern})")
        params = dict(tool.parameters) or {"type": "object"}
        if params.get("type", "object") != "object":
            raise ToolSchemaError(f"tool {tool.name!r}: parameters must be of type 'object'")
        builder = _Builder(tool.name, f"<[{quote_id}]>", rules)
        calls.append(f"{json.dumps(tool.name)} {builder.value(params | {'type': 'object'}, '')}")
    start = f'start: "call:" ({" | ".join(calls)}) <[{end_id}]>'
    return "\n".join([start, *rules, _STRING_TERMINAL]) + "\n"
