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


def _section_of(path: KeyPath, data: Any) -> type[BaseModel] | None:
    """The section class a key path points into (a union member, e.g. a task's 'kind' or an action's 'type', is
    chosen by the tag written in the data), or None (a free-form mapping such as a JSON schema)."""
    from edge_agent.config.schema import Config

    annotation: Any = Config
    node = data
    for part in path[:-1]:
        if not isinstance(part, int):
            model = section_type(annotation, node)
            if model is None or part not in model.model_fields:
                return None
            annotation = model.model_fields[part].annotation
        node = _child(node, part) if isinstance(node, dict | list) else None
    return section_type(annotation, node)


def _allowed_keys(path: KeyPath, data: Any) -> list[str]:
    """Field names of the section a key path points into (for 'did you mean')."""
    model = _section_of(path, data)
    return sorted(model.model_fields) if model is not None else []


def expects_boolean(path: KeyPath, data: Any) -> bool:
    """Whether the config's models take a boolean at this key path (so an unquoted on/off there is meant)."""
    model = _section_of(path, data)
    field = model.model_fields.get(str(path[-1])) if model is not None and path else None
    if field is None:
        return False
    annotation = field.annotation
    return annotation is bool or bool in getattr(annotation, "__args__", ())


def _child(node: dict[Any, Any] | list[Any], part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    return node[part] if isinstance(part, int) and 0 <= part < len(node) else None


def section_type(annotation: Any, node: Any = None) -> type[BaseModel] | None:
    """The model class inside Optional[...] / list[...] / Annotated[...]; of a union, the member whose
    'kind' or 'type' literal is the one in `node`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    candidates = [section_type(arg, node) for arg in getattr(annotation, "__args__", ())]
    found = [c for c in candidates if c is not None]
    if len(found) > 1 and isinstance(node, dict):
        found = [c for c in found if _tagged(c, node)]
    return found[0] if len(found) == 1 else None


def _tagged(model: type[BaseModel], node: dict[Any, Any]) -> bool:
    """Whether `node` names this union member in its 'kind' or 'type' key."""
    for tag in ("kind", "type"):
        field = model.model_fields.get(tag)
        if field is not None and tag in node:
            return node[tag] in getattr(field.annotation, "__args__", ())
    return False


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


def describe_error(error: ErrorDetails, path: KeyPath, data: Any = None) -> str:
    """A one-line, user-facing description of one validation error."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else ""
        close = difflib.get_close_matches(key, _allowed_keys(path, data), n=1)
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
    for suffix in ("_type", "_parsing"):
        if kind.endswith(suffix) and kind.removesuffix(suffix) in _TYPE_NAMES:
            return f"must be {_TYPE_NAMES[kind.removesuffix(suffix)]}{_shown(value, path)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]
