"""Gemma 4 image preprocessing against transformers' goldens (models/vision_goldens.py), and image file loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.model.media.vision import (
    BUDGETS,
    ImageError,
    ImageInput,
    VisionSettings,
    load_image,
    preprocess_image,
    stack_images,
    target_size,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "vision"
GOLDENS = sorted(path.stem for path in DATA.glob("*_b*.npz"))
TOLERANCE = 1e-5


def imread(path: Path, flags: int) -> np.ndarray:
    """cv2.imread that fails loudly."""
    image = cv2.imread(str(path), flags)
    assert image is not None, path
    return image


def source_of(golden: str) -> Path:
    """The image a golden was made from: <name>_b<budget>.npz comes from <name>.png or <name>.jpg."""
    name = golden.rsplit("_b", 1)[0]
    return next(path for path in (DATA / f"{name}.png", DATA / f"{name}.jpg") if path.exists())


def frame_of(golden: str) -> np.ndarray:
    """The frame as a caller hands it over: load_image's BGR, or BGRA straight from OpenCV for the alpha image."""
    path = source_of(golden)
    if golden.startswith("alpha"):
        bgra = imread(path, cv2.IMREAD_UNCHANGED)
        assert bgra.shape[2] == 4
        return bgra
    return load_image(path)


def expected_of(golden: str) -> dict[str, np.ndarray]:
    """The reference's arrays, rebuilt from the lossless golden (see models/vision_goldens.py)."""
    data = np.load(DATA / f"{golden}.npz")
    deltas = data["level_deltas"]
    levels = np.cumsum(np.cumsum(deltas, axis=0, dtype=np.uint8), axis=1, dtype=np.uint8)
    height, width, channels = levels.shape
    # The reference's convert_image_to_patches: from [C, H, W] to [patches, dy * dx * c].
    chw = levels.transpose(2, 0, 1).reshape(channels, height // 16, 16, width // 16, 16)
    patches = chw.transpose(1, 3, 2, 4, 0).reshape((height // 16) * (width // 16), -1)
    pixel_values = np.zeros((int(data["padded_length"]), 16 * 16 * 3), dtype=np.float32)
    pixel_values[: len(patches)] = (patches.astype(np.float64) * (1 / 255)).astype(np.float32)
    return {
        "pixel_values": pixel_values,
        "position_ids": data["position_ids"],
        "num_soft_tokens": data["num_soft_tokens"],
        "resized_hw": data["resized_hw"],
    }


def budget_of(golden: str) -> int:
    """The budget in a golden's name."""
    return int(golden.rsplit("_b", 1)[1])


# --- against transformers ---------------------------------------------------------------------------------------


def test_the_goldens_cover_what_they_should() -> None:
    names = {golden.rsplit("_b", 1)[0] for golden in GOLDENS}
    assert len(names) == 8 and {budget_of(g) for g in GOLDENS} == set(BUDGETS)
    for name in names - {"alpha_tall_160x1000"}:
        assert {70, 280} <= {budget_of(g) for g in GOLDENS if g.startswith(name)}
    summary = json.loads((DATA / "goldens.json").read_text(encoding="utf-8"))
    assert summary["transformers"].startswith("5.23") and set(summary["goldens"]) == set(GOLDENS)
    # Both of Pillow's pass orders are exercised: rows first when the height shrinks > 2x more than the width.
    orders = set()
    for golden in GOLDENS:
        height, width = imread(source_of(golden), cv2.IMREAD_UNCHANGED).shape[:2]
        new_height, new_width = expected_of(golden)["resized_hw"]
        orders.add(height - new_height > max(2 * (width - new_width), 0))
    assert orders == {True, False}


@pytest.mark.parametrize("golden", GOLDENS)
def test_preprocess_equals_the_reference(golden: str) -> None:
    expected = expected_of(golden)
    result = preprocess_image(frame_of(golden), budget_of(golden))
    assert result.pixel_values.dtype == np.float32 and result.position_ids.dtype == np.int64
    assert result.pixel_values.shape == expected["pixel_values"].shape == (budget_of(golden) * 9, 768)
    difference = float(np.abs(result.pixel_values - expected["pixel_values"]).max())
    assert difference <= TOLERANCE, f"{golden}: max |diff| {difference}"
    np.testing.assert_array_equal(result.position_ids, expected["position_ids"])
    assert result.num_soft_tokens == int(expected["num_soft_tokens"])
    assert result.resized_hw == tuple(int(v) for v in expected["resized_hw"])


def test_the_documented_example() -> None:
    result = preprocess_image(load_image(DATA / "landscape_640x360.png"), 280)
    assert result.resized_hw == (576, 1056) and result.num_soft_tokens == 264
    assert result.pixel_values.shape == (2520, 768)
    assert (result.position_ids[:2376] >= 0).all() and (result.position_ids[2376:] == -1).all()
    assert result.pixel_values.min() >= 0.0 and result.pixel_values.max() <= 1.0


def test_patches_are_dy_dx_channel_in_rgb_with_col_row_positions() -> None:
    assert target_size(288, 480, 70) == (288, 480)  # already its own target size: no resize
    frame = np.random.default_rng(3).integers(0, 256, (288, 480, 3), dtype=np.uint8)
    result = preprocess_image(frame, 70)
    assert result.resized_hw == (288, 480) and result.num_soft_tokens == 60
    row, col, dy, dx = 4, 7, 5, 11
    patch = result.pixel_values[row * 30 + col].reshape(16, 16, 3)
    b, g, r = frame[row * 16 + dy, col * 16 + dx]
    assert tuple(patch[dy, dx]) == tuple(np.float32(int(v) * (1 / 255)) for v in (r, g, b))
    assert tuple(result.position_ids[row * 30 + col]) == (col, row)


# --- sizes and budgets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0, 69, 71, 100, 281, 300, 2240, -70])
def test_a_budget_outside_the_five_is_refused_by_name(budget: int) -> None:
    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"one of 70, 140, 280, 560, 1120, not -?\d+"):
        preprocess_image(frame, budget)


@given(
    height=st.integers(1, 6000),
    width=st.integers(1, 6000),
    budget=st.sampled_from(BUDGETS),
)
@settings(max_examples=400, deadline=None)
def test_target_sizes_fit_the_budget(height: int, width: int, budget: int) -> None:
    new_height, new_width = target_size(height, width, budget)
    assert new_height > 0 and new_width > 0
    assert new_height % 48 == 0 and new_width % 48 == 0
    assert (new_height // 16) * (new_width // 16) <= budget * 9
    factor = math.sqrt(budget * 9 * 256 / (height * width))
    if factor * height >= 48 and factor * width >= 48:  # the largest multiples of 48 under the scaled sides
        assert new_height <= factor * height < new_height + 48
        assert new_width <= factor * width < new_width + 48


def test_very_thin_strips_become_one_patch_row() -> None:
    assert target_size(10, 4000, 70) == (48, 3360)
    assert target_size(4000, 10, 70) == (3360, 48)
    result = preprocess_image(np.full((10, 4000, 3), 200, dtype=np.uint8), 70)
    assert result.resized_hw == (48, 3360) and result.num_soft_tokens == 70


@given(
    height=st.integers(1, 260),
    width=st.integers(1, 260),
    budget=st.sampled_from((70, 140)),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=25, deadline=None)
def test_preprocessed_images_are_well_formed(height: int, width: int, budget: int, seed: int) -> None:
    frame = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    result = preprocess_image(frame, budget)
    rows, cols = result.resized_hw[0] // 16, result.resized_hw[1] // 16
    count = rows * cols
    assert result.resized_hw == target_size(height, width, budget)
    assert result.num_soft_tokens * 9 == count <= budget * 9
    assert result.pixel_values.shape == (budget * 9, 768) and result.position_ids.shape == (budget * 9, 2)
    assert not result.pixel_values[count:].any() and (result.position_ids[count:] == -1).all()
    grid = np.stack(np.meshgrid(np.arange(cols), np.arange(rows), indexing="xy"), axis=-1).reshape(-1, 2)
    np.testing.assert_array_equal(result.position_ids[:count], grid)
    assert result.pixel_values.min() >= 0.0 and result.pixel_values.max() <= 1.0


# --- colour layouts ----------------------------------------------------------------------------------------------


def test_grey_frames_equal_their_three_channel_copy() -> None:
    grey = imread(DATA / "odd_333x517.png", cv2.IMREAD_GRAYSCALE)
    expected = preprocess_image(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), 70)
    for frame in (grey, grey[:, :, None]):
        result = preprocess_image(frame, 70)
        np.testing.assert_array_equal(result.pixel_values, expected.pixel_values)
        assert result.resized_hw == expected.resized_hw


def test_bgra_is_composited_onto_white() -> None:
    bgr = load_image(DATA / "square_512x512.png")
    opaque = preprocess_image(np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)]), 70)
    np.testing.assert_array_equal(opaque.pixel_values, preprocess_image(bgr, 70).pixel_values)
    clear = preprocess_image(np.dstack([bgr, np.zeros(bgr.shape[:2], np.uint8)]), 70)
    count = clear.num_soft_tokens * 9
    assert (clear.pixel_values[:count] == 1.0).all()
    half = np.zeros((48, 48, 4), dtype=np.uint8)
    half[..., 3] = 128  # black at alpha 128/255 over white: round(255 * 127 / 255) = 127
    assert (preprocess_image(half, 70).pixel_values[:1] == np.float32(127 * (1 / 255))).all()


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((20, 20, 3), dtype=np.float32),
        np.zeros((20, 20, 2), dtype=np.uint8),
        np.zeros((0, 20, 3), dtype=np.uint8),
        np.zeros((20,), dtype=np.uint8),
        np.zeros((2, 20, 20, 3), dtype=np.uint8),
    ],
)
def test_unusable_frames_are_refused(frame: np.ndarray) -> None:
    with pytest.raises(ImageError, match="image must be"):
        preprocess_image(frame, 70)


# --- resampling --------------------------------------------------------------------------------------------------


def test_resize_keeps_flat_images_flat() -> None:
    expected = (np.array([0, 128, 255]) * (1 / 255)).astype(np.float32)
    for height, width in ((37, 91), (10, 300), (200, 13), (1000, 160), (4000, 48), (48, 4000)):  # both pass orders
        result = preprocess_image(np.full((height, width, 3), (255, 128, 0), dtype=np.uint8), 70)
        assert result.resized_hw != (height, width)
        valid = result.pixel_values[: result.num_soft_tokens * 9].reshape(-1, 3)
        assert (valid == expected).all(), (height, width)


# --- files -------------------------------------------------------------------------------------------------------


def test_load_image_gives_bgr_uint8() -> None:
    frame = load_image(DATA / "square_512x512.png")
    assert frame.dtype == np.uint8 and frame.shape == (512, 512, 3)
    np.testing.assert_array_equal(frame, imread(DATA / "square_512x512.png", cv2.IMREAD_COLOR))
    photo = load_image(DATA / "photo_480x320.jpg")
    assert photo.shape == (320, 480, 3)
    tall = load_image(DATA / "alpha_tall_160x1000.png")
    assert tall.shape == (1000, 160, 3)  # the alpha channel is dropped, as Pillow's convert("RGB") drops it


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("noise.jpg", bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), "not a readable image"),
        ("empty.png", b"", "empty file"),
        ("notes.png", b"The garage door is open.\nIt has been open for an hour.\n", "not a readable image"),
        ("half.png", (DATA / "tiny_50x40.png").read_bytes()[:1500], "not a readable image"),
    ],
)
def test_load_image_refuses_what_is_not_an_image(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(ImageError, match=reason) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_load_image_refuses_missing_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"missing\.jpg: no such file$"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


# --- batches and settings ----------------------------------------------------------------------------------------


def test_stack_images_batches_one_budget() -> None:
    frames = [load_image(DATA / name) for name in ("tiny_50x40.png", "wide_1000x200.png", "photo_480x320.jpg")]
    images = [preprocess_image(frame, 70) for frame in frames]
    pixel_values, position_ids = stack_images(images)
    assert pixel_values.shape == (3, 630, 768) and pixel_values.dtype == np.float32
    assert position_ids.shape == (3, 630, 2) and position_ids.dtype == np.int64
    np.testing.assert_array_equal(position_ids[1], images[1].position_ids)
    with pytest.raises(ValueError, match="one padded length"):
        stack_images([images[0], preprocess_image(frames[0], 140)])
    with pytest.raises(ValueError, match="no images"):
        stack_images([])


def test_settings_come_from_the_model_directory(tmp_path: Path) -> None:
    assert VisionSettings.from_model_dir(tmp_path) == VisionSettings()
    block = {
        "image_processor_type": "Gemma4ImageProcessor",
        "max_soft_tokens": 140,
        "patch_size": 16,
        "pooling_kernel_size": 3,
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": 0.5,
        "size": {"height": 224, "width": 224},  # in some ports; the Gemma 4 processor never reads it
    }
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": block}), encoding="utf-8")
    loaded = VisionSettings.from_model_dir(tmp_path)
    assert loaded.max_soft_tokens == 140 and loaded.do_normalize
    assert loaded.image_mean == (0.5, 0.5, 0.5) and loaded.image_std == (0.5, 0.5, 0.5)
    frame = load_image(DATA / "tiny_50x40.png")
    plain, normalized = preprocess_image(frame, 70), preprocess_image(frame, 70, loaded)
    count = plain.num_soft_tokens * 9
    np.testing.assert_array_equal(normalized.pixel_values[:count], (plain.pixel_values[:count] - 0.5) / 0.5)


def test_settings_fall_back_to_preprocessor_config(tmp_path: Path) -> None:
    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "Gemma4Processor"}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"patch_size": 14, "max_soft_tokens": 560}))
    assert VisionSettings.from_model_dir(tmp_path) == VisionSettings(patch_size=14, max_soft_tokens=560)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "unreadable JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"resample": 2}), "resample 3"),
        (json.dumps({"patch_size": "16"}), "patch_size must be an integer"),
        (json.dumps({"max_soft_tokens": 300}), "one of 70, 140, 280, 560, 1120"),
    ],
)
def test_bad_settings_name_the_file(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "preprocessor_config.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ImageError, match=reason) as caught:
        VisionSettings.from_model_dir(tmp_path)
    assert str(path) in str(caught.value)


def test_image_input_is_what_the_encoder_takes() -> None:
    result = preprocess_image(load_image(DATA / "portrait_360x640.png"), 140)
    assert isinstance(result, ImageInput)
    assert result.pixel_values.flags.c_contiguous and result.position_ids.flags.c_contiguous
