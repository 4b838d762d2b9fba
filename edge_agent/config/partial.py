"""Cross-section checks on a file that failed validation: the parts that validate, and stand-ins for the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from edge_agent.config.errors import KeyPath, section_type
from edge_agent.config.schema import Config, cross_check


def _validated(annotation: Any, raw: Any, context: Mapping[str, Any]) -> Any:
    """`raw` validated as `annotation`, or None when it is not valid."""
    try:
        return TypeAdapter(annotation).validate_python(raw, context=dict(context))
    except (ValidationError, TypeError, ValueError):
        return None


def _stand_in(annotation: Any, raw: Any, context: Mapping[str, Any]) -> BaseModel | None:
    """An unvalidated section holding the fields of `raw` that are valid on their own (for name references)."""
    model = section_type(annotation, raw)
    if model is None or not isinstance(raw, dict):
        return None
    fields = {}
    for key, value in raw.items():
        info = model.model_fields.get(str(key))
        if info is None:
            continue
        checked = _validated(info.annotation, value, context)
        if checked is None:
            checked = _stand_in(info.annotation, value, context)  # e.g. a tool's invalid action
        if checked is not None:
            fields[str(key)] = checked
    return model.model_construct(**fields)


def _item_annotation(annotation: Any) -> Any:
    """The item type of a list[...] field, or None."""
    return annotation.__args__[0] if getattr(annotation, "__origin__", None) is list else None


def _partial(
    data: dict[str, Any], context: Mapping[str, Any], stand_ins: frozenset[str]
) -> tuple[Config, dict[str, list[int]]]:
    """A Config of what validates (and, in the `stand_ins` sections, of what does not); each list's kept indices."""
    values: dict[str, Any] = {}
    origins: dict[str, list[int]] = {}
    for name, info in Config.model_fields.items():
        if name not in data:
            continue
        raw, item = data[name], _item_annotation(info.annotation)
        if item is not None and isinstance(raw, list):
            kept: list[Any] = []
            origins[name] = []
            for index, entry in enumerate(raw):
                value = _validated(item, entry, context)
                if value is None and name in stand_ins:
                    value = _stand_in(item, entry, context)
                if value is not None:
                    kept.append(value)
                    origins[name].append(index)
            values[name] = kept
            continue
        value = _validated(info.annotation, raw, context)
        if value is None and name in stand_ins and item is None:  # a list written as something else: left out
            value = _stand_in(info.annotation, raw, context)
        if value is not None:
            values[name] = value
    return Config.model_construct(**values), origins


def _original(path: KeyPath, origins: dict[str, list[int]]) -> KeyPath:
    """A path into the partial config's lists as a path into the file's."""
    if len(path) > 1 and isinstance(path[1], int) and str(path[0]) in origins:
        return (path[0], origins[str(path[0])][path[1]], *path[2:])
    return path


def partial_cross_check(data: dict[str, Any], context: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    """The cross-section problems of a file that failed validation, at the paths of the file (best effort)."""
    sections = frozenset(Config.model_fields)
    # a stand-in may lack what a check reads: then without the stand-ins of one section, then of none
    for stand_ins in (sections, *(sections - {name} for name in sorted(sections)), frozenset()):
        config, origins = _partial(data, context, stand_ins)
        try:
            problems = cross_check(config)
        except (AttributeError, TypeError, ValueError, KeyError):
            continue
        return [(_original(path, origins), message) for path, message in problems]
    return []
