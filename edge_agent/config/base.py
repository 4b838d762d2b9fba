"""Shared pieces of the config models: the strict base class and path/identifier types."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

ID_PATTERN = r"^[a-zA-Z0-9_-]+$"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def sanitize_id(text: str) -> str:
    """Turn any text (e.g. a hostname) into an id made of `[a-zA-Z0-9_-]` only."""
    cleaned = re.sub(r"[^a-zA-Z0-9_-]+", "_", text).strip("_")
    return cleaned or "edge-agent"


def default_device_id() -> str:
    """The sanitised short hostname."""
    return sanitize_id(socket.gethostname().split(".")[0])


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = path.expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def _hidden_from_the_service(path: Path) -> str:
    """Why a path under /home may be missing when the systemd unit (ProtectHome=yes) reads the config, or ''."""
    if "INVOCATION_ID" not in os.environ:  # not run by systemd
        return ""
    if any(Path(hidden) in path.parents for hidden in ("/home", "/root", "/run/user")):
        return (
            " (the edge-agent unit sets ProtectHome=yes, which hides /home from the service: use /var/lib/edge-agent)"
        )
    return ""


def _existing_file(path: Path, info: ValidationInfo) -> Path:
    path = _resolve(path, info)
    if not path.is_file():
        raise ValueError(f"file not found: {path}{_hidden_from_the_service(path)}")
    return path


def _existing_dir(path: Path, info: ValidationInfo) -> Path:
    path = _resolve(path, info)
    if not path.is_dir():
        raise ValueError(f"directory not found: {path}{_hidden_from_the_service(path)}")
    return path


def _topic_segment(topic: str) -> str:
    if not topic or topic.startswith("/") or topic.endswith("/"):
        raise ValueError("must be a non-empty MQTT topic without a leading or trailing '/'")
    if any(ch in topic for ch in "+#\0"):
        raise ValueError("must not contain the MQTT wildcards '+' or '#'")
    return topic


FilePath = Annotated[Path, AfterValidator(_existing_file)]
"""An existing file; relative paths are taken from the config file's directory."""

DirPath = Annotated[Path, AfterValidator(_existing_dir)]
"""An existing directory; relative paths are taken from the config file's directory."""

AnyPath = Annotated[Path, AfterValidator(_resolve)]
"""A path that may not exist yet (state, spool); relative to the config file's directory."""

Topic = Annotated[str, AfterValidator(_topic_segment)]
"""An MQTT topic or topic prefix without wildcards."""

Identifier = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=64)]
"""A name usable in MQTT topics and Home Assistant unique ids."""
