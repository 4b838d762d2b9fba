"""What a program may hand the model: images, recordings and tools in the forms it has them, made uniform."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_agent.messages import ToolSpec
from edge_agent.model.media.audio_files import SAMPLE_RATE, AudioError, load_audio
from edge_agent.model.media.from_bytes import audio_from_bytes, image_from_bytes
from edge_agent.model.media.vision import ImageError, load_image

_TOOL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")  # as a config's tool names
MAX_AUDIO_S = 30.0  # the model hears at most 30 s of a recording

# A file path, encoded bytes (JPEG/PNG), an OpenCV frame (BGR/grey/BGRA uint8) or a Pillow image.
ImageLike = str | os.PathLike[str] | bytes | np.ndarray | Image.Image
# A file path (WAV, FLAC, ... or .raw/.pcm/.s16 at 16 kHz), encoded bytes (WAV/FLAC), or 16 kHz mono samples.
AudioLike = str | os.PathLike[str] | bytes | np.ndarray
# {"name", "description", "parameters": JSON schema of an object} or a ToolSpec.
ToolLike = Mapping[str, Any] | ToolSpec


def as_image(item: ImageLike) -> np.ndarray:
    """The image as a BGR uint8 frame; ImageError saying what is wrong with it."""
    if isinstance(item, (str, os.PathLike)):
        return load_image(Path(item))
    if isinstance(item, bytes):
        return image_from_bytes(item)
    if isinstance(item, Image.Image):
        rgb = np.asarray(item.convert("RGB"), dtype=np.uint8)
        return np.ascontiguousarray(rgb[:, :, ::-1])
    if isinstance(item, np.ndarray):
        return item  # checked (uint8, shape) by the preprocessing, with its own message
    raise ImageError(f"an image must be a path, bytes, a numpy array or a PIL image, not {type(item).__name__}")


def as_audio(item: AudioLike) -> np.ndarray:
    """The recording as float32 mono samples at 16 kHz; AudioError saying what is wrong with it."""
    if isinstance(item, (str, os.PathLike)):
        return load_audio(Path(item))
    if isinstance(item, bytes):
        return audio_from_bytes(item, MAX_AUDIO_S)
    if not isinstance(item, np.ndarray):
        raise AudioError(f"audio must be a path, bytes or a numpy array, not {type(item).__name__}")
    if item.ndim != 1 or item.size == 0:
        raise AudioError(
            f"audio samples must be a non-empty 1-D array (mono, {SAMPLE_RATE} Hz), not shape {item.shape}"
        )
    if item.dtype == np.int16:
        return item.astype(np.float32) / 32768.0
    if not np.issubdtype(item.dtype, np.floating):
        raise AudioError(f"audio samples must be float (-1..1) or int16, not {item.dtype}")
    if not np.isfinite(item).all():
        raise AudioError("audio samples must be finite (no NaN or infinity)")
    return np.ascontiguousarray(item, dtype=np.float32)


def as_tool(item: ToolLike) -> ToolSpec:
    """A tool declaration; ValueError when a dict lacks a name or has unknown keys."""
    if isinstance(item, ToolSpec):
        return item
    if not isinstance(item, Mapping):
        raise ValueError(f"a tool must be a dict or a ToolSpec, not {type(item).__name__}")
    unknown = set(item) - {"name", "description", "parameters"}
    name = item.get("name")
    if unknown or not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise ValueError(
            f"a tool is {{'name', 'description', 'parameters'}} with a name of letters, digits and _; got {item!r:.200}"
        )
    parameters = item.get("parameters") or {"type": "object", "properties": {}}
    return ToolSpec(name, str(item.get("description", "")), dict(parameters))
