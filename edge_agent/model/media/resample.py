"""Pillow's bicubic resize of 8-bit images (libImaging/Resample.c), bit for bit, in numpy.

What Pillow computes (read in Resample.c: precompute_coeffs, normalize_coeffs_8bpc, ImagingResampleHorizontal_8bpc,
ImagingResampleVertical_8bpc, ImagingResampleInner), and how this module reproduces it:
- Per axis, scale = in / out (double) and filterscale = max(scale, 1): downscaling widens the kernel (antialiasing),
  support = 2 * filterscale. Output pixel i is centred at (i + 0.5) * scale; it reads inputs
  [trunc(centre - support + 0.5), trunc(centre + support + 0.5)) clipped to the image, each weighted by the Keys
  cubic with a = -0.5 at (j - centre + 0.5) * (1 / filterscale), divided by the weights' sum (added in order).
- Weights become fixed point: trunc(w * 2**22 +- 0.5) (round half away from zero).
- A horizontal pass (only when the width changes) and a vertical pass (only when the height changes), each output
  (2**21 + sum(pixel * weight)) >> 22 clipped to 0..255, so uint8 rounding happens between the passes. The order
  matters. Pillow 13.0 (ImagingResampleInner, read in its sdist) goes vertical first when the height shrinks by
  more than twice as many pixels as the width does (in_h - out_h > 0 and > 2 * (in_w - out_w)), else horizontal
  first; Pillow 12 always went horizontal first, so with it those cases differ by a few levels.
- Here the weights are scaled by the exact power 2**-22, so every product and partial sum is a multiple of 2**-22
  below 2**17: float64 matrix products give Pillow's int32 sums exactly, whatever order BLAS adds in. The weights
  form a band; each block of 16 outputs is one small dense product over the inputs it reads.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

PRECISION_BITS = 22  # Pillow's fixed-point fraction bits for 8-bit images: 32 - 8 - 2
BICUBIC_SUPPORT = 2.0
_BLOCK = 16  # outputs per dense product: small keeps the band's zeros few, large keeps the calls few
_CHUNK = 1 << 21  # float64 values converted at a time (16 MB): a 12-megapixel photo would need 290 MB at once


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic_filter (a = -0.5), with its operation order."""
    x = np.abs(x)
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5
    result: np.ndarray = np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))
    return result


def fixed_point_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First input index [out] and fixed-point weights [out, taps] (zero past each pixel's span), as Pillow has them."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    taps = math.ceil(support) * 2 + 1
    centre = (np.arange(out_size) + 0.5) * scale
    first = np.maximum(np.trunc(centre - support + 0.5), 0.0).astype(np.int64)
    count = np.minimum(np.trunc(centre + support + 0.5), in_size).astype(np.int64) - first
    offsets = np.arange(taps)
    positions = (first[:, None] + offsets).astype(np.float64)
    weights = np.where(
        offsets < count[:, None], _keys_cubic((positions - centre[:, None] + 0.5) * (1.0 / filterscale)), 0.0
    )
    total = np.zeros(out_size)
    for tap in range(taps):  # Pillow adds the weights one by one; numpy's sum would pair them
        total = total + weights[:, tap]
    weights = weights / np.where(total != 0.0, total, 1.0)[:, None]
    scaled = weights * float(1 << PRECISION_BITS)
    fixed = np.trunc(np.where(scaled < 0.0, scaled - 0.5, scaled + 0.5))
    return first, fixed


@functools.lru_cache(maxsize=16)
def _blocks(in_size: int, out_size: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """(out_start, out_stop, in_start, in_stop, weights [in_span, out_span] float64) covering every output."""
    first, fixed = fixed_point_weights(in_size, out_size)
    taps = fixed.shape[1]
    blocks = []
    for start in range(0, out_size, _BLOCK):
        stop = min(start + _BLOCK, out_size)
        lo = int(first[start])
        hi = min(int(first[stop - 1]) + taps, in_size)
        dense = np.zeros((hi - lo, stop - start))
        for column, row in enumerate(range(start, stop)):
            span = min(taps, in_size - int(first[row]))
            dense[first[row] - lo : first[row] - lo + span, column] = fixed[row, :span]
        dense *= 1.0 / (1 << PRECISION_BITS)  # a power of two: products and sums stay exact, in pixel units
        dense.setflags(write=False)
        blocks.append((start, stop, lo, hi, dense))
    return tuple(blocks)


def _round_to_uint8_range(sums: np.ndarray) -> np.ndarray:
    """Pillow's (2**21 + sum) >> 22 clipped to 0..255, in place, on sums already scaled by 2**-22 (exact)."""
    sums += 0.5
    np.floor(sums, out=sums)
    np.clip(sums, 0.0, 255.0, out=sums)
    return sums


def _resample_columns(levels: np.ndarray, out_size: int) -> np.ndarray:
    """Horizontal pass: uint8 [H, C, W] -> [H, C, out_size], a few rows at a time to bound the float64 memory."""
    height, channels, width = levels.shape
    out = np.empty((height, channels, out_size), dtype=np.uint8)
    step = max(1, _CHUNK // (channels * width))
    for top in range(0, height, step):
        rows = np.ascontiguousarray(levels[top : top + step], dtype=np.float64).reshape(-1, width)
        sums = np.empty((rows.shape[0], out_size))
        for start, stop, lo, hi, dense in _blocks(width, out_size):
            sums[:, start:stop] = rows[:, lo:hi] @ dense
        out[top : top + step] = _round_to_uint8_range(sums).reshape(-1, channels, out_size)
    return out


def _resample_rows(levels: np.ndarray, out_size: int) -> np.ndarray:
    """Vertical pass: uint8 [H, C, W] -> [out_size, C, W], a few columns at a time to bound the float64 memory."""
    height, channels, width = levels.shape
    out = np.empty((out_size, channels, width), dtype=np.uint8)
    step = max(1, _CHUNK // (channels * height))
    for left in range(0, width, step):
        columns = np.ascontiguousarray(levels[:, :, left : left + step], dtype=np.float64).reshape(height, -1)
        sums = np.empty((out_size, columns.shape[1]))
        for start, stop, lo, hi, dense in _blocks(height, out_size):
            sums[start:stop] = dense.T @ columns[lo:hi]
        out[:, :, left : left + step] = _round_to_uint8_range(sums).reshape(out_size, channels, -1)
    return out


def resize_like_pillow(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an [H, W, C] uint8 image to [height, width, C] exactly as Pillow's Image.resize(BICUBIC) does."""
    in_height, in_width, channels = image.shape
    if height < 1 or width < 1:
        raise ValueError(f"cannot resize to {height}x{width}")
    if (in_height, in_width) == (height, width):
        unchanged: np.ndarray = image.copy()
        return unchanged
    # Layout [H, C, W]: rows of one channel are contiguous for the horizontal products, [H, C * W] for the vertical.
    levels = image.transpose(0, 2, 1)
    if in_height - height > max(2 * (in_width - width), 0):  # Pillow 13's test for a vertical pass first
        levels = _resample_rows(levels, height)
        if width != in_width:
            levels = _resample_columns(levels, width)
    else:
        if width != in_width:
            levels = _resample_columns(levels, width)
        if height != in_height:
            levels = _resample_rows(levels, height)
    resized: np.ndarray = cv2.merge([levels[:, channel] for channel in range(channels)])  # interleaves fast
    return resized.reshape(height, width, channels)
