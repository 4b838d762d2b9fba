"""Turn pydantic's validation errors into short messages with the user's key path."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

KeyPath = tuple[str | int, ...]
_SECRET_SUFFIXES = ("password", "secret", "token", "key")

_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a mapping",
    "model": "a mapping",
}


def locate(loc: Sequence[int | str], data: Any) -> KeyPath:
    """Map a pydantic error location onto keys of the data, dropping union tags and member names."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in (node.get("kind"), node.get("type")):
            continue  # the tag of a discriminated union, e.g. 'watch'
        elif node is not None and not isinstance(node, dict) and isinstance(part, str):
            continue  # a union member name such as 'str' or 'int'
        else:
            node = None
        path.append(part)
    return tuple(path)


def _allowed_keys(path: KeyPath) -> list[str]:
    """Field names of the section a key path points into (best effort, for 'did you mean')."""
    from edge_agent.config.schema import Config

    model: Any = Config
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        model = _section_type(fields[part].annotation)
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The single model class inside Optional[...] / list[...] / Annotated[...], if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    candidates = [_section_type(arg) for arg in getattr(annotation, "__args__", ())]
    found = [c for c in candidates if c is not None]
    return found[0] if len(found) == 1 else None


def _shown(value: Any, path: KeyPath) -> str:
    name = str(path[-1]).lower() if path else ""
    if name.endswith(_SECRET_SUFFIXES) or isinstance(value, dict | list):
        return ""
    text = repr(value)
    return f" (got {text})" if len(text) <= 60 else ""


def error_path(error: ErrorDetails, data: Any) -> KeyPath:
    """The key path an error belongs to; a bad union tag points at the tag key itself."""
    path = locate(error["loc"], data)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = str((error.get("ctx") or {}).get("discriminator", "kind")).strip("'")
        path = (*path, tag)
    return path


def describe_error(error: ErrorDetails, path: KeyPath) -> str:
    """A one-line, user-facing description of one validation error."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else ""
        close = difflib.get_close_matches(key, _allowed_keys(path), n=1)
        return "unknown key" + (f" (did you mean '{close[0]}'?)" if close else "")
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        limit = f"{limit:g}" if isinstance(limit, float) else limit
        return f"must be {bounds[kind]} {limit}{_shown(value, path)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}{_shown(value, path)}"
    if kind == "union_tag_invalid":
        return f"must be one of {ctx.get('expected_tags', '?')}{_shown(ctx.get('tag'), path)}"
    if kind == "union_tag_not_found":
        return f"required key is missing (one of {ctx.get('expected_tags', '?')})"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else error["msg"].lower()
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}{_shown(value, path)}"
    if kind == "string_type" and isinstance(value, bool):
        return f"must be a string (YAML read {value} from an unquoted on/off/yes/no: put it in quotes)"
    for suffix in ("_type", "_parsing"):
        if kind.endswith(suffix) and kind.removesuffix(suffix) in _TYPE_NAMES:
            return f"must be {_TYPE_NAMES[kind.removesuffix(suffix)]}{_shown(value, path)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]
