"""Write tests/data/vision: drawn test images and the golden output of transformers' Gemma 4 image processor.

Run with the export environment (transformers 5.23 + Pillow), from the repository root:
    .venv-export/bin/python models/vision_goldens.py
The reference is Gemma4ImageProcessorPil(max_soft_tokens=B) (torchvision is not needed). To fit in little space a
golden keeps the reference's pixel_values losslessly as uint8 levels k: every valid value is exactly
float32(k * (1/255)) and the padding rows are zero (both asserted here). The levels are stored in image layout
[H, W, 3] as second differences mod 256 ("level_deltas"); tests/model/test_vision_preprocess.py undoes them with two
cumsums and re-orders them into patches as the reference does (asserted here too). The tests never run this.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL
import transformers
from PIL import Image
from transformers.models.gemma4.image_processing_pil_gemma4 import (
    Gemma4ImageProcessorPil,
    get_aspect_ratio_preserving_size,
)

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "vision"
# (name, width, height, extra budgets beyond 70 and 280)
SCENES = (
    ("landscape_640x360", 640, 360, ()),
    ("portrait_360x640", 360, 640, ()),
    ("square_512x512", 512, 512, (140,)),
    ("wide_1000x200", 1000, 200, (560,)),
    ("tiny_50x40", 50, 40, ()),
    ("odd_333x517", 333, 517, (1120,)),  # the big budgets cost space: each on one image only
)
JPEG = ("photo_480x320", 480, 320)  # saved as JPEG: checks load_image's decoding against Pillow's
ALPHA = ("alpha_tall_160x1000", 160, 1000)  # a BGRA PNG: compositing onto white; at 70 Pillow resizes rows first
WORDS = ("Garage door OPEN", "12:34:56", "Kitchen cam 2", "ALERT", "edge-agent", "0123456789", "wxyz #@%&")


def draw_scene(width: int, height: int, seed: int) -> np.ndarray:
    """A BGR picture with a gradient, 1-pixel stripes, a noise patch, shapes and text: detail resampling must keep."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), dtype=np.uint8)
    horizon = 2 * height // 5
    sky = np.linspace((235, 175, 110), (250, 225, 200), horizon)  # a gentle vertical gradient
    image[:horizon] = np.round(sky)[:, None, :].astype(np.uint8)
    image[horizon:] = (60, 115, 75)
    cv2.circle(image, (width * 3 // 4, horizon // 2), max(horizon // 3, 2), (80, 220, 255), -1, cv2.LINE_AA)
    band = slice(height // 3, height // 3 + max(height // 10, 2))
    image[band, : width // 2 : 2] = (0, 0, 0)  # 1-pixel stripes: the worst case for a resampling filter
    image[band, 1 : width // 2 : 2] = (255, 255, 255)
    image[band, width // 2 :: 3] = (0, 160, 255)
    top, left = 2 * height // 3, width // 2
    patch = image[top : top + max(height // 8, 2), left : left + max(width // 8, 2)]
    patch[:] = np.clip(patch + rng.normal(0, 40, patch.shape), 0, 255).astype(np.uint8)
    scale = max(min(width, height) / 400, 0.3)
    for _ in range(4 + width * height // 20000):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(3, max(4, min(width, height) // 4)))
        kind = rng.integers(4)
        if kind == 0:
            cv2.circle(image, (cx, cy), size, colour, -1 if rng.random() < 0.5 else 2, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (cx, cy), (cx + size, cy + size // 2), colour, -1)
        elif kind == 2:
            points = rng.integers(-size, size, (5, 2)) + np.array([cx, cy])
            cv2.fillPoly(image, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, (cx, cy), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    for row, text in enumerate(WORDS):
        origin = (int(5 + 7 * row * scale) % max(width // 2, 1), int((row + 1) * height / (len(WORDS) + 1)))
        colour = (255, 255, 255) if row % 2 else (0, 0, 0)
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, 1, cv2.LINE_AA)
    return image


def patches_of(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] levels -> [patches, 768] as the reference's convert_image_to_patches orders them (from C, H, W)."""
    height, width, channels = image.shape
    chw = image.transpose(2, 0, 1).reshape(channels, height // 16, 16, width // 16, 16)
    return chw.transpose(1, 3, 2, 4, 0).reshape((height // 16) * (width // 16), -1)


def reference(image: Image.Image | np.ndarray, budget: int) -> dict[str, Any]:
    """The processor's output at one budget, checked and packed losslessly for a golden file."""
    out = Gemma4ImageProcessorPil(max_soft_tokens=budget)(image, return_tensors="np")
    pixels = out["pixel_values"][0]
    positions = out["image_position_ids"][0]
    tokens = int(out["num_soft_tokens_per_image"][0])
    valid = int((positions[:, 0] >= 0).sum())
    assert pixels.dtype == np.float32 and positions.dtype == np.int64, (pixels.dtype, positions.dtype)
    assert pixels.shape == (budget * 9, 768) and positions.shape == (budget * 9, 2)
    assert not pixels[valid:].any() and (positions[valid:] == -1).all() and tokens * 9 == valid <= budget * 9
    height, width = (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]
    resized = get_aspect_ratio_preserving_size(
        height, width, patch_size=16, max_patches=budget * 9, pooling_kernel_size=3
    )
    rows, cols = resized[0] // 16, resized[1] // 16
    assert rows * cols == valid and tuple(positions[valid - 1]) == (cols - 1, rows - 1)
    # The valid rows are a permutation of the resized image's levels k, each value exactly float32(k * (1/255)).
    levels = np.round(pixels[:valid].astype(np.float64) * 255).astype(np.uint8)
    image_levels = levels.reshape(rows, cols, 16, 16, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 16, cols * 16, 3)
    assert np.array_equal((patches_of(image_levels).astype(np.float64) * (1 / 255)).astype(np.float32), pixels[:valid])
    # Second differences (mod 256) deflate far better than the levels; the tests undo them with two cumsums.
    deltas = np.diff(np.diff(image_levels, axis=1, prepend=np.uint8(0)), axis=0, prepend=np.uint8(0))
    decoded = np.cumsum(np.cumsum(deltas, axis=0, dtype=np.uint8), axis=1, dtype=np.uint8)
    assert np.array_equal(decoded, image_levels)
    return {
        "level_deltas": deltas,
        "position_ids": positions,
        "num_soft_tokens": np.int64(tokens),
        "resized_hw": np.array(resized, dtype=np.int64),
        "padded_length": np.int64(pixels.shape[0]),
    }


def write_golden(name: str, image: Image.Image | np.ndarray, budgets: tuple[int, ...], summary: dict[str, Any]) -> None:
    """One npz per budget: <name>_b<budget>.npz."""
    for budget in budgets:
        golden = reference(image, budget)
        np.savez_compressed(OUT / f"{name}_b{budget}.npz", **golden)
        summary[f"{name}_b{budget}"] = {
            "resized_hw": golden["resized_hw"].tolist(),
            "num_soft_tokens": int(golden["num_soft_tokens"]),
        }


def main() -> None:
    """Draw the images, save them, and write every golden."""
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.iterdir():  # the directory holds only what this script writes
        stale.unlink()
    summary: dict[str, Any] = {"transformers": transformers.__version__, "pillow": PIL.__version__, "goldens": {}}
    for seed, (name, width, height, extra) in enumerate(SCENES):
        bgr = draw_scene(width, height, seed)
        path = OUT / f"{name}.png"
        cv2.imwrite(str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert np.array_equal(decoded, bgr)
        write_golden(
            name, Image.fromarray(np.ascontiguousarray(decoded[:, :, ::-1])), (70, 280, *extra), summary["goldens"]
        )

    name, width, height = JPEG
    ok, encoded = cv2.imencode(".jpg", draw_scene(width, height, 10), [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    (OUT / f"{name}.jpg").write_bytes(encoded.tobytes())
    # As transformers' own load_image would: Pillow decodes the file.
    photo = Image.open(io.BytesIO(encoded.tobytes())).convert("RGB")
    write_golden(name, photo, (70, 280), summary["goldens"])

    name, width, height = ALPHA
    bgr = draw_scene(width, height, 11)
    y, x = np.mgrid[0:height, 0:width]
    alpha = np.clip(255 * (x / (width - 1)) + 60 * np.sin(y / 5.0), 0, 255).astype(np.uint8)
    alpha[: height // 5] = 0  # fully transparent rows
    alpha[-height // 5 :] = 255  # fully opaque rows
    bgra = np.dstack([bgr, alpha])
    path = OUT / f"{name}.png"
    cv2.imwrite(str(path), bgra, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, bgra)
    # An RGBA array takes convert_to_rgb's numpy path (compositing onto white), as an RGBA frame would.
    write_golden(name, np.ascontiguousarray(decoded[:, :, [2, 1, 0, 3]]), (70,), summary["goldens"])

    (OUT / "goldens.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(summary['goldens'])} goldens to {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
