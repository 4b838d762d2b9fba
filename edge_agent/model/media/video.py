"""Gemma 4 video preprocessing in numpy and OpenCV, after transformers 5.25's Gemma4VideoProcessor.

Checked in transformers 5.25 `models/gemma4/video_processing_gemma4.py`, `video_processing_utils.py`,
`video_utils.py` (default_sample_indices_fn, read_video_opencv, VideoMetadata.timestamps) and
`processing_gemma4.py` (replace_video_token); tests/model/test_video_preprocess.py compares with its output
(goldens written by models/video_goldens.py):
- Sampling: indices = arange(n) * total // n for n = num_frames (32 by default); transformers refuses a clip with
  fewer frames than n, here such a clip keeps all its frames. Timestamps are index / fps (24 when unknown), or the
  caller's own timestamps of the sampled frames; each is written as `mm:ss` (whole seconds, truncated).
- Each frame is sized by the image rule (vision.target_size) at max_soft_tokens (70 by default) and resized by
  torchvision's antialiased bicubic, which on CPU runs torch's uint8 kernel (Pillow-SIMD's): Keys' cubic a = -0.5
  with support 2 * scale when shrinking, weights normalised in float64, then fixed point with as many bits (< 22)
  as keep twice the largest weight under 2**15 (14 or 15 here), columns first, each pass rounded and saturated to
  uint8. Bit-exact on every golden; rows first is not. Pillow's own resize (the image path) is not reused: on noise
  it is one level off on ~0.4% of the values.
- Patches and position ids as for an image (dy, dx, c order; (col, row); padding rows zero with position -1),
  padded to budget * 9; every frame's rows go through the vision encoder as an image's do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from edge_agent.log.native import watch_native
from edge_agent.model.media.vision import BUDGETS, ImageInput, VisionSettings, _as_rgb, target_size

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_NUM_FRAMES",
    "DEFAULT_VIDEO_BUDGET",
    "VIDEO_TOKEN",
    "Clip",
    "VideoError",
    "VideoInput",
    "frames_as_clip",
    "preprocess_video",
    "prompt_text",
    "read_video",
    "sample_indices",
    "sampled_timestamps",
    "timestamp_text",
]

DEFAULT_NUM_FRAMES = 32
DEFAULT_VIDEO_BUDGET = 70
DEFAULT_FPS = 24.0  # what transformers assumes when a clip's frame rate is unknown
VIDEO_TOKEN = "<|video|>"  # the chat template's placeholder for a clip, and each frame's soft-token slot
FRAME_START, FRAME_END = "<|image>", "<image|>"
MAX_DECODED_FRAMES = 100_000  # a file claiming more frames than this is refused rather than read
# Rescale fused into normalize (mean 0, std 1 / rescale_factor = 255), in float32 as torch computes it.
_LEVEL_VALUES = np.arange(256, dtype=np.float32) / np.float32(255)


class VideoError(ValueError):
    """A video or frame sequence that cannot be used; the message says why."""


@dataclass(frozen=True)
class Clip:
    """Frames of one clip (BGR uint8, OpenCV order) with the second each was taken at, from the clip's start."""

    frames: tuple[np.ndarray, ...]
    timestamps: tuple[float, ...]


@dataclass(frozen=True)
class VideoInput:
    """One clip ready for the vision encoder: every sampled frame as an image, and its timestamp."""

    frames: tuple[ImageInput, ...]
    timestamps: tuple[float, ...]

    @property
    def num_soft_tokens(self) -> int:
        """Soft tokens of one frame (all frames of a clip share one size)."""
        return self.frames[0].num_soft_tokens

    @property
    def total_soft_tokens(self) -> int:
        """Soft tokens of the whole clip: the rows the vision encoder returns for it."""
        return self.num_soft_tokens * len(self.frames)

    @property
    def timestamp_texts(self) -> tuple[str, ...]:
        """Each frame's `mm:ss`, as the processor writes it before the frame."""
        return tuple(timestamp_text(seconds) for seconds in self.timestamps)


def timestamp_text(seconds: float) -> str:
    """`mm:ss` of a frame time, as Gemma4Processor.replace_video_token writes it."""
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def sample_indices(total: int, num_frames: int) -> np.ndarray:
    """default_sample_indices_fn: arange(n) * total // n, with n at most `total`."""
    if total < 1:
        raise VideoError("a clip needs at least one frame")
    if num_frames < 1:
        raise VideoError(f"frames to sample must be positive, not {num_frames}")
    count = min(num_frames, total)
    indices: np.ndarray = np.arange(count, dtype=np.int64) * total // count
    return indices


def sampled_timestamps(clip: Clip, num_frames: int = DEFAULT_NUM_FRAMES) -> tuple[float, ...]:
    """Timestamps of the frames preprocess_video keeps."""
    return tuple(float(clip.timestamps[i]) for i in sample_indices(len(clip.timestamps), num_frames))


def prompt_text(timestamps: Sequence[float], soft_tokens: int = 1) -> str:
    """What the processor writes for a clip: `mm:ss <|image>` + `<|video|>` x soft_tokens + `<image|>` per frame."""
    run = VIDEO_TOKEN * soft_tokens
    return " ".join(f"{timestamp_text(t)} {FRAME_START}{run}{FRAME_END}" for t in timestamps)


@lru_cache(maxsize=64)
def _resize_weights(in_size: int, out_size: int) -> tuple[np.ndarray, int]:
    """[out, in] integer weights (as float64) of torch's uint8 antialiased bicubic along one axis, and their bits."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        x = np.abs((np.arange(low, high) - center + 0.5) * invscale)
        near = ((1.5 * x - 2.5) * x) * x + 1.0  # Keys' cubic, a = -0.5, |x| < 1
        far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0  # 1 <= |x| < 2
        row = np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))
        total = np.cumsum(row)[-1] if len(row) else 0.0  # summed in order, as the reference does
        weights[i, low:high] = row / total if total != 0.0 else row
    # Fixed point as torch's uint8 kernel: the most bits (< 22) that keep the largest weight * 2 under 2**15.
    largest, bits = weights.max(), 0
    while bits < 22 and int(0.5 + largest * (1 << (bits + 1))) < (1 << 15):
        bits += 1
    scaled = weights * (1 << bits)
    return np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)), bits


def _resize_axis(levels: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass along `axis` (0 rows, 1 columns) of [H, W, 3] uint8: integer sums, rounded, shifted, saturated."""
    weights, bits = _resize_weights(levels.shape[axis], out_size)
    spec = "oh,hwc->owc" if axis == 0 else "ow,hwc->hoc"
    # Every product and sum is an integer below 2**31: exact in float64, so BLAS may add in any order.
    sums = np.einsum(spec, weights, levels.astype(np.float64), optimize=True).astype(np.int64)
    passed: np.ndarray = np.clip((sums + (1 << (bits - 1))) >> bits, 0, 255).astype(np.uint8)
    return passed


def _resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W, 3] uint8 resized to [height, width, 3] as torch's uint8 antialiased bicubic (columns, then rows)."""
    if width != rgb.shape[1]:
        rgb = _resize_axis(rgb, width, 1)
    if height != rgb.shape[0]:
        rgb = _resize_axis(rgb, height, 0)
    return rgb


def _frame_input(bgr: np.ndarray, budget: int, settings: VisionSettings) -> ImageInput:
    """One frame sized and resized the video processor's way, then cut into patches as an image is."""
    rgb = _as_rgb(bgr)
    height, width = target_size(rgb.shape[0], rgb.shape[1], budget, settings)
    if (height, width) != rgb.shape[:2]:
        rgb = _resize(rgb, height, width)
    patch, kernel = settings.patch_size, settings.pooling_kernel_size
    rows, cols = height // patch, width // patch
    count, max_patches = rows * cols, budget * kernel**2
    levels = rgb.reshape(rows, patch, cols, patch, 3).swapaxes(1, 2).reshape(count, -1)
    pixel_values = np.zeros((max_patches, patch * patch * 3), dtype=np.float32)
    pixel_values[:count] = _LEVEL_VALUES[levels]
    position_ids = np.full((max_patches, 2), -1, dtype=np.int64)
    position_ids[:count, 0] = np.tile(np.arange(cols), rows)
    position_ids[:count, 1] = np.repeat(np.arange(rows), cols)
    return ImageInput(pixel_values, position_ids, count // kernel**2, (height, width))


def preprocess_video(
    clip: Clip,
    budget: int = DEFAULT_VIDEO_BUDGET,
    num_frames: int = DEFAULT_NUM_FRAMES,
    settings: VisionSettings | None = None,
) -> VideoInput:
    """Sample `num_frames` frames of a clip and patch each at `budget` soft tokens."""
    if budget not in BUDGETS:
        raise VideoError(f"video budget must be one of {', '.join(map(str, BUDGETS))}, not {budget}")
    if len(clip.frames) != len(clip.timestamps):
        raise VideoError(f"{len(clip.frames)} frames but {len(clip.timestamps)} timestamps")
    if any(not math.isfinite(t) or t < 0 for t in clip.timestamps):
        raise VideoError("frame timestamps must be finite seconds >= 0")
    shapes = {frame.shape[:2] for frame in clip.frames if isinstance(frame, np.ndarray)}
    if len(shapes) > 1:
        raise VideoError(f"the frames of one clip must share one size, got {sorted(shapes)}")
    settings = settings or VisionSettings()
    picked = sample_indices(len(clip.frames), num_frames)
    frames = tuple(_frame_input(clip.frames[i], budget, settings) for i in picked)
    return VideoInput(frames, tuple(float(clip.timestamps[i]) for i in picked))


def _open(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    with watch_native() as native:  # FFmpeg's own complaint, when native stderr is captured
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        said = "; ".join(line.text for line in native.lines if line.origin.startswith("ffmpeg"))
        raise VideoError(f"{path}: not a readable video ({said or 'corrupt, or a format OpenCV cannot decode'})")
    return capture


def read_video(path: Path, num_frames: int = DEFAULT_NUM_FRAMES) -> Clip:
    """The frames of a video file that the processor samples, with their timestamps (read_video_opencv's way)."""
    path = Path(path)
    capture = _open(path)
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if total < 1 or total > MAX_DECODED_FRAMES:
            raise VideoError(f"{path}: reports {total} frames; a clip needs 1 to {MAX_DECODED_FRAMES}")
        wanted = {int(i) for i in sample_indices(total, num_frames)}
        frames: list[np.ndarray] = []
        indices: list[int] = []
        for index in range(max(wanted) + 1):  # decoded in order, as read_video_opencv does; none after the last
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append(frame)
                indices.append(index)
    finally:
        capture.release()
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded")
    rate = fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
    return Clip(tuple(frames), tuple(index / rate for index in indices))


def frames_as_clip(frames: Sequence[np.ndarray], fps: float = DEFAULT_FPS) -> Clip:
    """Frames taken at a steady rate as a clip (timestamps index / fps)."""
    if not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"fps must be positive, not {fps}")
    return Clip(tuple(frames), tuple(i / fps for i in range(len(frames))))
