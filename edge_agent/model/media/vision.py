"""Gemma 4 image preprocessing in numpy, OpenCV and Pillow, equal to transformers 5.23's Gemma 4 image processor.

Checked in transformers 5.23 `models/gemma4/image_processing_pil_gemma4.py` (Gemma4ImageProcessorPil; the torchvision
twin image_processing_gemma4.py shares the size rule), `image_processing_backends.py` (PilBackend) and
`image_transforms.py` (resize, rescale, normalize, convert_to_rgb); tests/model/test_vision_preprocess.py compares
with its output (goldens written by models/vision_goldens.py):
- The budget (max_soft_tokens) must be one of 70, 140, 280, 560, 1120; max_patches = budget * k * k (k =
  pooling_kernel_size = 3, patch p = 16).
- Size (get_aspect_ratio_preserving_size): factor = sqrt(max_patches * p**2 / (h * w)); each side becomes
  floor(side * factor / 48) * 48 (48 = p * k), so patches <= max_patches and the aspect ratio holds to within one
  48-pixel step; small images grow. A side that floors to 0 becomes 48 and the other floor(long / short) * 48,
  at most budget * 48 (very long strips are squashed, not cropped).
- Resize: none when the size already matches; else PIL `Image.resize(size, BICUBIC)` of the uint8 RGB image
  (reducing_gap None), done here by Pillow itself the same way (mode "RGB", uint8 in and out: the reference
  rescales after resizing, so no float "F" images). Pillow rounds to uint8 between its two fixed-point passes, so
  their order matters, and Pillow 13 changed it: rows first when the height shrinks by more than twice as many
  pixels as the width, else columns first (Pillow 10 to 12 always go columns first: up to 24 levels off on noise
  in the other case). The goldens come from Pillow 13, which needs Python >= 3.11, so the passes are two one-axis
  resize calls in Pillow 13's order, equal to Pillow 13's one call on every Pillow from 10 (checked with 10.0,
  11.3, 12.3 and 13.0). OpenCV's INTER_CUBIC differs by up to 0.3 here. The torchvision twin resizes with
  torchvision's antialiased bicubic instead, which is not expected to match Pillow to the level (not checked here:
  no torchvision); the goldens come from the Pillow backend, the one transformers uses without torchvision.
- Rescale: uint8 -> float64 * rescale_factor (1/255) -> float32, so every value is float32(k / 255).
  do_normalize is false for Gemma 4 (mean 0, std 1): no mean/std; the vision model computes 2 * (x - 0.5) itself.
  A config with do_normalize true gets (x - mean) / std in float32, as transformers' normalize does.
- Patches: [C, H, W] -> [H/p, W/p, p, p, C] flattened, patches row by row, each in (dy, dx, c) order (768 values).
- Position ids: (col, row) of each patch in that order, int64; padding rows after the real patches up to
  max_patches: zero pixels and position (-1, -1). Soft tokens = patches / k**2.
- Colour: RGB. Grey is repeated into three channels; 4-channel arrays are composited onto white as convert_to_rgb
  does for arrays: round(a/255 * c + (1 - a/255) * 255), float64, round half to even. load_image, like
  transformers' load_image (Pillow's convert("RGB")), drops a file's alpha channel and applies EXIF orientation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from edge_agent.model.media.processor_config import checked_scalar, settings_from_model_dir

__all__ = [
    "BUDGETS",
    "ImageError",
    "ImageInput",
    "VisionSettings",
    "load_image",
    "preprocess_image",
    "stack_images",
    "target_size",
]

BUDGETS: tuple[int, ...] = (70, 140, 280, 560, 1120)
PIL_BICUBIC = int(Image.Resampling.BICUBIC)  # 3, as processor configs save it


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class VisionSettings:
    """Image processor parameters under the names transformers saves them with; the defaults are Gemma 4's."""

    patch_size: int = 16
    pooling_kernel_size: int = 3
    max_soft_tokens: int = 280
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = False
    image_mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    image_std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        """Refuse settings the processor could not run with."""
        if self.patch_size < 1 or self.pooling_kernel_size < 1:
            raise ValueError(f"patch_size and pooling_kernel_size must be positive: {self}")
        if self.max_soft_tokens not in BUDGETS:
            raise ValueError(f"max_soft_tokens must be one of {_budget_list()}, not {self.max_soft_tokens}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or 0.0 in self.image_std:
            raise ValueError(f"image_mean and image_std need 3 values each, std non-zero: {self}")

    @property
    def side_multiple(self) -> int:
        """Every resized side is a multiple of this: patch_size * pooling_kernel_size."""
        return self.patch_size * self.pooling_kernel_size

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisionSettings:
        """Settings from a saved image-processor dict; unknown keys are ignored, as transformers does."""
        if data.get("do_resize") is False or data.get("resample", PIL_BICUBIC) != PIL_BICUBIC:
            raise ValueError("only do_resize true with resample 3 (bicubic) is supported, as Gemma 4 ships")
        values: dict[str, Any] = {}
        for field in fields(cls):
            value = data.get(field.name)
            if value is None:
                continue
            kind = str(field.type)
            if kind.startswith("tuple"):
                values[field.name] = _channel_values(field.name, value)
            else:
                values[field.name] = checked_scalar(field.name, kind, value)
        return cls(**values)

    @classmethod
    def from_model_dir(cls, root: Path) -> VisionSettings:
        """processor_config.json's "image_processor" block, else preprocessor_config.json, else the defaults."""
        return settings_from_model_dir(
            root, ("image_processor",), parse=cls.from_dict, default=cls, error=ImageError, what="image processor"
        )


@dataclass(frozen=True)
class ImageInput:
    """One image ready for the vision encoder."""

    pixel_values: np.ndarray  # [budget*k*k, patch*patch*3] float32, zero rows for padding
    position_ids: np.ndarray  # [budget*k*k, 2] int64 (col, row), -1 for padding rows
    num_soft_tokens: int  # valid patches / (k*k): rows the vision encoder outputs for this image
    resized_hw: tuple[int, int]


def _channel_values(name: str, value: Any) -> tuple[float, ...]:
    """A saved image_mean / image_std: a list of numbers, or one number that transformers repeats per channel."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),) * 3
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be a list of numbers, not {value!r}")
    return tuple(float(v) for v in value)


def _budget_list() -> str:
    """The allowed budgets, for messages."""
    return ", ".join(str(b) for b in BUDGETS)


def target_size(height: int, width: int, budget: int, settings: VisionSettings | None = None) -> tuple[int, int]:
    """(height, width) the reference resizes an image to at this budget (get_aspect_ratio_preserving_size)."""
    settings = settings or VisionSettings()
    kernel, side = settings.pooling_kernel_size, settings.side_multiple
    max_patches = budget * kernel**2
    target_pixels = max_patches * settings.patch_size**2
    factor = math.sqrt(target_pixels / (height * width))
    new_height = math.floor(factor * height / side) * side
    new_width = math.floor(factor * width / side) * side
    if new_height == 0 and new_width == 0:
        raise ValueError(f"a {height}x{width} image resizes to nothing at budget {budget}")
    longest = (max_patches // kernel**2) * side
    if new_height == 0:
        new_height, new_width = side, min(math.floor(width / height) * side, longest)
    elif new_width == 0:
        new_height, new_width = min(math.floor(height / width) * side, longest), side
    return new_height, new_width


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or grey, uint8) as RGB [H, W, 3] uint8 (possibly a view)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ImageError(f"an image must be a uint8 array (an OpenCV frame), not {kind}")
    channels = frame.shape[2] if frame.ndim == 3 else 1
    if frame.ndim not in (2, 3) or channels not in (1, 3, 4) or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ImageError(f"an image must be HxW grey, HxWx3 BGR or HxWx4 BGRA with pixels, not shape {frame.shape}")
    if channels == 1:
        return np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=2)
    if channels == 3:
        return frame[:, :, ::-1]
    alpha = frame[:, :, 3:4] / 255
    composite = alpha * frame[:, :, 2::-1] + (1 - alpha) * 255
    rgb: np.ndarray = np.round(composite).astype(np.uint8)
    return rgb


def _resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W, 3] uint8 RGB resized to [height, width, 3] by Pillow's bicubic filter, as Pillow 13 resizes it."""
    image = Image.fromarray(np.ascontiguousarray(rgb))  # uint8 [H, W, 3]: mode "RGB"
    in_height, in_width = rgb.shape[:2]
    # One axis per call, in Pillow 13's pass order, so that older Pillows (Python 3.10 gets at most 12) agree too.
    if in_height - height > max(2 * (in_width - width), 0):
        image = image.resize((in_width, height), Image.Resampling.BICUBIC)  # rows first
    else:
        image = image.resize((width, in_height), Image.Resampling.BICUBIC)  # columns first
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=np.uint8)


def _value_table(settings: VisionSettings) -> np.ndarray:
    """[256, 1, 3] float32 (an OpenCV 3-channel LUT): each uint8 level of each channel after rescale and normalize."""
    levels = np.arange(256, dtype=np.float64)
    values = (levels * settings.rescale_factor if settings.do_rescale else levels).astype(np.float32)
    table = np.repeat(values[:, None, None], 3, axis=2)
    if settings.do_normalize:
        mean = np.asarray(settings.image_mean, dtype=np.float32)
        std = np.asarray(settings.image_std, dtype=np.float32)
        table = (table - mean) / std
    return table


def preprocess_image(bgr: np.ndarray, budget: int, settings: VisionSettings | None = None) -> ImageInput:
    """Patches, position ids and soft-token count of one OpenCV frame at a token budget."""
    if budget not in BUDGETS:
        raise ValueError(f"image budget must be one of {_budget_list()}, not {budget}")
    settings = settings or VisionSettings()
    rgb = _as_rgb(bgr)
    height, width = target_size(rgb.shape[0], rgb.shape[1], budget, settings)
    if (height, width) != rgb.shape[:2]:
        rgb = _resize(rgb, height, width)
    patch = settings.patch_size
    rows, cols = height // patch, width // patch
    count, max_patches = rows * cols, budget * settings.pooling_kernel_size**2
    # Patch order on the uint8 levels (a row of one patch, p * 3 bytes, moves as one), then a table lookup.
    levels = np.ascontiguousarray(rgb.reshape(rows, patch, cols, patch * 3).swapaxes(1, 2)).reshape(count, -1, 3)
    pixel_values = np.zeros((max_patches, patch * patch * 3), dtype=np.float32)
    pixel_values[:count] = cv2.LUT(levels, _value_table(settings)).reshape(count, -1)
    position_ids = np.full((max_patches, 2), -1, dtype=np.int64)
    position_ids[:count, 0] = np.tile(np.arange(cols), rows)
    position_ids[:count, 1] = np.repeat(np.arange(rows), cols)
    return ImageInput(pixel_values, position_ids, count // settings.pooling_kernel_size**2, (height, width))


def load_image(path: Path) -> np.ndarray:
    """A JPEG/PNG/... file as a BGR uint8 frame (EXIF orientation applied); ImageError when it cannot be used."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file, not an image")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise ImageError(f"{path}: not a readable image (corrupt, truncated, or a format OpenCV cannot decode)")
    frame: np.ndarray = image
    return frame


def stack_images(images: Sequence[ImageInput]) -> tuple[np.ndarray, np.ndarray]:
    """pixel_values [N, P, D] float32 and position_ids [N, P, 2] int64 for one vision_encoder run."""
    if not images:
        raise ValueError("no images to stack")
    lengths = sorted({image.pixel_values.shape[0] for image in images})
    if len(lengths) > 1:
        raise ValueError(f"images of one batch need one padded length (one budget), got lengths {lengths}")
    return np.stack([i.pixel_values for i in images]), np.stack([i.position_ids for i in images])
