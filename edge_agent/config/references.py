"""The `references` section: named reference images (a person, a pet, a car) a task can show the model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
from PIL import Image
from pydantic import AfterValidator, Field, field_validator

from edge_agent.config.base import FilePath, Identifier, Section
from edge_agent.config.model import ImageBudget

MAX_REFERENCE_PIXELS = 40_000_000  # as for images sent over MQTT: a small file must not decode into a huge picture
MAX_REFERENCE_BYTES = 16 * 2**20


def reference_image_problem(path: Path) -> str | None:
    """Why `path` is not a usable reference image (JPEG or PNG, at most 40 MP and 16 MiB), or None."""
    try:
        size = path.stat().st_size
        if size > MAX_REFERENCE_BYTES:
            return f"{path}: {size} bytes is too large (at most {MAX_REFERENCE_BYTES})"
        data = path.read_bytes()
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    if data[:3] != b"\xff\xd8\xff" and data[:8] != b"\x89PNG\r\n\x1a\n":
        return f"{path}: not a JPEG or PNG image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as header:  # the header only: refuse a huge picture before decoding it
                width, height = header.size
    except Exception as exc:  # Pillow raises many kinds for a broken header
        return f"{path}: an unreadable image ({type(exc).__name__})"
    if width * height > MAX_REFERENCE_PIXELS:
        return f"{path}: {width}x{height} pixels is too large (at most {MAX_REFERENCE_PIXELS:,} pixels)"
    if cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) is None:
        return f"{path}: not a readable image (corrupt or truncated)"
    return None


def _decodable(path: Path) -> Path:
    problem = reference_image_problem(path)
    if problem is not None:
        raise ValueError(problem)
    return path


class ReferenceImageConfig(Section):
    """One named reference image."""

    name: Identifier = Field(description="Name a task or question uses for this reference (e.g. rex).")
    image: Annotated[FilePath, AfterValidator(_decodable)] = Field(
        description="The image file (JPEG or PNG, at most 40 megapixels); checked to decode when the config is read."
    )
    description: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="What the image shows, told to the model with it (e.g. 'Rex, our dog').",
    )
    budget: ImageBudget = Field(
        default=70, description="Image soft tokens for this reference: 70, 140, 280, 560 or 1120."
    )

    @field_validator("description")
    @classmethod
    def _plain_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(ch in value for ch in "<>") or any(ord(ch) < 32 for ch in value) or not value.strip():
            raise ValueError("must be one line of plain text without '<' or '>' (they could spell control tokens)")
        return value.strip()
