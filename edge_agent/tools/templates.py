"""Topic and payload templates: `{name}` placeholders for declared parameters, every other brace literal."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOPIC_FORBIDDEN = ("/", "+", "#", "\0")


class TemplateError(ValueError):
    """A call's arguments cannot be put into a template (missing, or unsafe for a topic)."""


def _text(value: Any) -> str:
    """An argument as template text: strings as-is, anything else JSON-encoded."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _inside_strings(source: str, matches: list[re.Match[str]]) -> list[bool]:
    """For each placeholder of a JSON template: whether it sits inside a JSON string literal."""
    starts = {match.start(): match.end() for match in matches}
    flags: list[bool] = []
    in_string, index = False, 0
    while index < len(source):
        if index in starts:
            flags.append(in_string)
            index = starts[index]
            continue
        char = source[index]
        if in_string and char == "\\":
            index += 2
            continue
        if char == '"':
            in_string = not in_string
        index += 1
    return flags


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and placeholder names, alternating (literal first)."""

    source: str
    parts: tuple[str, ...]  # even indexes: literal text; odd indexes: parameter names
    in_string: tuple[bool, ...]  # per placeholder of a JSON template: inside a JSON string literal
    is_json: bool  # the template is a JSON object or array once its placeholders are filled

    @property
    def names(self) -> tuple[str, ...]:
        """The parameter names the template uses, in order."""
        return self.parts[1::2]

    def as_filter(self) -> str:
        """The MQTT topic filter of every topic this (topic) template renders: a level with a placeholder is '+'."""
        marked = "".join(part if index % 2 == 0 else "\0" for index, part in enumerate(self.parts))
        return "/".join("+" if "\0" in level else level for level in marked.split("/"))

    def _value_text(self, slot: int, value: Any) -> str:
        if not self.is_json:
            return _text(value)
        if self.in_string[slot]:
            return json.dumps(_text(value), ensure_ascii=False)[1:-1]  # escaped: it stays inside its string
        return json.dumps(value, ensure_ascii=False)  # a JSON value of its own (strings get their quotes)

    def render(
        self, arguments: Mapping[str, Any], *, topic: bool = False, defaults: Mapping[str, Any] | None = None
    ) -> str:
        """The text with each placeholder replaced; TemplateError when an argument is missing or unsafe."""
        out: list[str] = []
        for index, part in enumerate(self.parts):
            if index % 2 == 0:
                out.append(part)
                continue
            if part in arguments:
                value = arguments[part]
            elif defaults is not None and part in defaults:
                value = defaults[part]
            else:
                raise TemplateError(f"argument '{part}' is needed by the template {self.source!r}")
            if topic:
                text = _text(value)
                if not text or any(ch in text for ch in _TOPIC_FORBIDDEN):
                    raise TemplateError(
                        f"argument '{part}' cannot be used in a topic: it is empty or contains '/', '+', '#' or NUL"
                    )
            else:
                text = self._value_text(index // 2, value)
            out.append(text)
        rendered = "".join(out)
        if self.is_json and not topic:
            try:
                json.loads(rendered)
            except ValueError:
                raise TemplateError("the payload is not valid JSON once the arguments are put in") from None
        return rendered


def parse_template(source: str, parameters: Collection[str], *, where: str) -> Template:
    """Parse `source`; ValueError naming `where` when a placeholder is not one of `parameters`."""
    matches = list(_PLACEHOLDER.finditer(source))
    parts: list[str] = []
    position = 0
    for match in matches:
        name = match.group(1)
        if name not in parameters:
            raise ValueError(f"{where}: placeholder '{{{name}}}' is not a declared parameter")
        parts += [source[position : match.start()], name]
        position = match.end()
    parts.append(source[position:])
    probe = _PLACEHOLDER.sub("0", source)
    try:
        json.loads(probe)
        is_json = probe.lstrip()[:1] in ("{", "[")
    except ValueError:
        is_json = False
    in_string = _inside_strings(source, matches) if is_json else [False] * len(matches)
    return Template(source, tuple(parts), tuple(in_string), is_json)
