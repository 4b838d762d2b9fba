"""Motion gate on synthetic frames: still scenes stay quiet, movement fires fast, masks are ignored."""

from __future__ import annotations

import numpy as np
from rig.camera import moving_square

from edge_agent.config import MotionConfig
from edge_agent.gating.motion import MotionDetector
from edge_agent.messages import Frame


def frame(image: np.ndarray, index: int) -> Frame:
    return Frame("cam", image, index, 0.0, 0.0)


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def test_a_still_noisy_scene_never_fires_over_1000_frames() -> None:
    rng = np.random.default_rng(0)
    still = [noisy(moving_square(0), rng) for _ in range(50)]  # sensor noise that never repeats in step
    detector = MotionDetector(MotionConfig())
    results = [detector.check(frame(still[(i * 7) % 50], i)) for i in range(1000)]
    assert not any(r.motion for r in results)
    assert not any(r.scene_change for r in results)


def test_a_moving_square_fires_within_three_frames() -> None:
    rng = np.random.default_rng(1)
    detector = MotionDetector(MotionConfig(warmup_frames=5))
    for i in range(10):
        assert not detector.check(frame(noisy(moving_square(0), rng), i)).motion
    fired = [detector.check(frame(noisy(moving_square(step), rng), 10 + step)).motion for step in range(1, 4)]
    assert any(fired)
    assert fired[0]


def test_warm_up_suppresses_early_motion() -> None:
    detector = MotionDetector(MotionConfig(warmup_frames=5))
    results = [detector.check(frame(moving_square(i), i)) for i in range(8)]
    assert [r.motion for r in results[:5]] == [False] * 5
    assert all(r.motion for r in results[5:])


def test_motion_inside_a_mask_is_ignored() -> None:
    # the square moves along a band at y = 80..120 of 240 (1/3 of the height); mask that band
    band = [[(0.0, 0.25), (1.0, 0.25), (1.0, 0.6), (0.0, 0.6)]]
    masked = MotionDetector(MotionConfig(mask=band))
    plain = MotionDetector(MotionConfig())
    masked_hits = [masked.check(frame(moving_square(i), i)).motion for i in range(40)]
    plain_hits = [plain.check(frame(moving_square(i), i)).motion for i in range(40)]
    assert not any(masked_hits) and sum(plain_hits) >= 30


def test_lights_on_is_a_scene_change_not_motion() -> None:
    detector = MotionDetector(MotionConfig(warmup_frames=2))
    dark = np.full((240, 320, 3), 30, np.uint8)
    for i in range(5):
        detector.check(frame(dark, i))
    bright = detector.check(frame(np.full((240, 320, 3), 200, np.uint8), 5))
    assert bright.scene_change and not bright.motion
    after = [detector.check(frame(np.full((240, 320, 3), 200, np.uint8), 6 + i)) for i in range(5)]
    assert not any(r.motion or r.scene_change for r in after)
