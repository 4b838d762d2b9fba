"""Render the config reference (every key, its type, default and description) as a Markdown table."""

from __future__ import annotations

import argparse
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from edge_agent.config.node import DeviceConfig
from edge_agent.config.schema import Config

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _type_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_text(get_args(annotation)[0])
    if origin is Literal:
        return " \\| ".join(repr(v) if isinstance(v, str) else str(v) for v in get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [_type_text(a) for a in get_args(annotation) if a is not type(None)]
        return " \\| ".join(dict.fromkeys(parts))
    if origin is list:
        return f"list of {_type_text(get_args(annotation)[0])}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is SecretStr:
        return "secret string"
    return getattr(annotation, "__name__", str(annotation)).replace("PosixPath", "path").replace("Path", "path")


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        made = field.default_factory()  # type: ignore[call-arg]
        return "" if isinstance(made, BaseModel) else f"`{made}`" if made != [] else "`[]`"
    return "" if field.default is None else f"`{field.default}`"


def _rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        description = (field.description or "").replace("|", "\\|")
        default = "hostname" if name == "id" and model is DeviceConfig else _default_text(field)
        yield key, _type_text(field.annotation), default, description
        nested = _models_in(field.annotation)
        is_list = get_origin(field.annotation) is list
        for sub in nested:
            if len(nested) > 1:  # a discriminated union: the first field is the tag
                tag_name, tag_field = next(iter(sub.model_fields.items()))
                tag = f"{tag_name}={get_args(tag_field.annotation)[0]}"
                yield from _rows(sub, f"{key}[{tag}]." if is_list else f"{key}({tag}).")
            else:
                yield from _rows(sub, f"{key}[]." if is_list else f"{key}.")


def render_reference() -> str:
    """The Markdown table of every config key."""
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d} | {desc} |" for k, t, d, desc in _rows(Config, "")]
    return "\n".join(lines)


def replace_block(text: str) -> str:
    """`text` with the block between the reference markers replaced by a fresh rendering."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no {START} ... {END} block found")
    return pattern.sub(lambda _: f"{START}\n{render_reference()}\n{END}", text)


def main() -> None:
    """`python -m edge_agent.config.docs [--write README.md]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="update the reference block in this Markdown file")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(replace_block(args.write.read_text()))
    else:
        print(render_reference())


if __name__ == "__main__":
    main()
