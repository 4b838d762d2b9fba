"""Preprocessing settings saved beside a model: find the processor's block and check its scalar values."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

Settings = TypeVar("Settings")

# transformers reads processor_config.json's per-processor block first, then preprocessor_config.json whole.
CONFIG_FILES = ("processor_config.json", "preprocessor_config.json")


def find_processor_block(root: Path, blocks: tuple[str, ...]) -> tuple[Path, dict[str, Any]] | None:
    """The first saved settings for one processor (`blocks`: its key names), with their file; None when absent."""
    for name in CONFIG_FILES:
        path = Path(root) / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a JSON object")
        block = next((data[key] for key in blocks if data.get(key) is not None), None)
        if block is None and name == "processor_config.json":
            continue
        return path, block if isinstance(block, dict) else data
    return None


def checked_scalar(name: str, kind: str, value: Any) -> Any:
    """`value` as the dataclass field `name` of type `kind` ("int", "bool", "float", other) wants it."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    if kind == "bool" and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    if kind == "float" and not is_number:
        raise ValueError(f"{name} must be a number, not {value!r}")
    return float(value) if kind == "float" else value


def settings_from_model_dir(
    root: Path,
    blocks: tuple[str, ...],
    *,
    parse: Callable[[dict[str, Any]], Settings],
    default: Callable[[], Settings],
    error: type[ValueError],
    what: str,
) -> Settings:
    """Parse one processor's saved settings with `parse`, else `default()`; problems raise `error` naming the file."""
    try:
        found = find_processor_block(root, blocks)
    except ValueError as exc:
        raise error(str(exc)) from None
    if found is None:
        return default()
    path, block = found
    try:
        return parse(block)
    except (TypeError, ValueError) as exc:
        raise error(f"{path}: {what} settings: {exc}") from exc
