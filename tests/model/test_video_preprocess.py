"""Video preprocessing vs transformers' Gemma4VideoProcessor (goldens from models/video_goldens.py)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.model.media.video import (
    Clip,
    VideoError,
    frames_as_clip,
    preprocess_video,
    prompt_text,
    read_video,
    sample_indices,
    timestamp_text,
)

MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-gemma4"
GOLDENS = json.loads((MODEL / "video_goldens.json").read_text())
CLIPS = {clip["name"]: clip for clip in GOLDENS["clips"]}
TOLERANCE = 1e-5  # as the image goldens


def load_frames(name: str) -> np.ndarray:
    """[N, H, W, 3] BGR frames stored as the first frame and differences from it."""
    data = np.load(MODEL / "examples" / name)
    frames: np.ndarray = data["deltas"] + data["first"]
    return frames


def clip_of(golden: dict[str, Any]) -> Clip:
    """The golden's clip as the daemon gets it: frames with timestamps, or read from its file."""
    if "file" in golden:
        return read_video(MODEL / "examples" / golden["file"], golden["num_frames"])
    return frames_as_clip(list(load_frames(golden["frames_file"])), golden["fps"])


def test_the_goldens_cover_lengths_sizes_rates_and_budgets() -> None:
    clips = GOLDENS["clips"]
    assert len(clips) >= 5 and GOLDENS["transformers"].startswith("5.")
    assert len({c["fps"] for c in clips}) >= 4 and len({c["budget"] for c in clips}) >= 3
    assert len({tuple(c["frames"][0]["resized_hw"]) for c in clips}) == len(clips)
    assert any(c["num_frames"] == 32 for c in clips) and any("file" in c for c in clips)
    assert max(t for c in clips for t in c["timestamps"]) >= 60  # mm:ss past a minute


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_preprocess_equals_the_reference(name: str) -> None:
    golden = CLIPS[name]
    video = preprocess_video(clip_of(golden), golden["budget"], golden["num_frames"])
    assert video.timestamps == tuple(golden["timestamps"])
    runs = re.sub(r"<\|video\|>\*(\d+)", lambda m: "<|video|>" * int(m[1]), golden["prompt_text"])
    assert prompt_text(video.timestamps, video.num_soft_tokens) == runs
    assert len(video.frames) == len(golden["frames"])
    for frame, expected in zip(video.frames, golden["frames"], strict=True):
        assert frame.resized_hw == tuple(expected["resized_hw"])
        assert frame.num_soft_tokens == expected["num_soft_tokens"]
        valid = frame.num_soft_tokens * 9
        assert frame.pixel_values.shape == (golden["budget"] * 9, 768) and frame.pixel_values.dtype == np.float32
        assert not frame.pixel_values[valid:].any() and (frame.position_ids[valid:] == -1).all()
        rows, cols = expected["resized_hw"][0] // 16, expected["resized_hw"][1] // 16
        assert tuple(frame.position_ids[valid - 1]) == (cols - 1, rows - 1)
        assert tuple(frame.position_ids[cols]) == (0, 1)
        levels = np.round(frame.pixel_values[:valid].astype(np.float64) * 255).astype(np.uint8)
        values = levels.astype(np.float32) / np.float32(255)
        assert np.abs(values - frame.pixel_values[:valid]).max() <= TOLERANCE
        picks = np.random.default_rng(0).integers(0, levels.size, len(expected["sampled_levels"]))
        assert levels.reshape(-1)[picks].tolist() == expected["sampled_levels"]
        assert int(levels.astype(np.int64).sum()) == expected["levels_sum"]
        assert hashlib.sha256(levels.tobytes()).hexdigest() == expected["levels_sha256"]


def test_sampling_and_timestamps_follow_the_reference_rule() -> None:
    assert sample_indices(48, 8).tolist() == [0, 6, 12, 18, 24, 30, 36, 42]
    assert sample_indices(3, 32).tolist() == [0, 1, 2]  # fewer frames than asked: all of them
    assert timestamp_text(0.99) == "00:00" and timestamp_text(75.9) == "01:15" and timestamp_text(3600) == "60:00"
    frames = [np.full((50, 80, 3), i, np.uint8) for i in range(3)]
    video = preprocess_video(Clip(tuple(frames), (0.0, 61.5, 125.0)), 70, 32)
    assert video.timestamp_texts == ("00:00", "01:01", "02:05") and video.total_soft_tokens == 3 * 60


def test_bad_clips_get_one_clear_error(tmp_path: Path) -> None:
    frame = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(VideoError, match="share one size"):
        preprocess_video(Clip((frame, np.zeros((40, 50, 3), np.uint8)), (0.0, 1.0)))
    with pytest.raises(VideoError, match="timestamps"):
        preprocess_video(Clip((frame,), (0.0, 1.0)))
    with pytest.raises(VideoError, match="at least one frame"):
        preprocess_video(Clip((), ()))
    with pytest.raises(VideoError, match="budget"):
        preprocess_video(Clip((frame,), (0.0,)), budget=100)
    with pytest.raises(VideoError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match=r"garbage\.mp4"):
        read_video(garbage)
