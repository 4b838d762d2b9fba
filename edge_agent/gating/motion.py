"""Motion gate: downscaled grey frame differencing against a slowly learnt background."""

from __future__ import annotations

import cv2
import numpy as np

from edge_agent.config import MotionConfig
from edge_agent.messages import Frame, MotionResult

_BACKGROUND_ALPHA = 0.1  # how fast the background follows the scene (light changes, parked objects)
_KERNEL = np.ones((3, 3), np.uint8)


class MotionDetector:
    """Stateful per-camera detector; `check` costs well under a millisecond at the default 160 px width."""

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._background: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._unmasked = 0
        self._seen = 0

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        small_h = max(1, round(height * self.config.width / width))
        small = cv2.resize(image, (self.config.width, small_h), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def _build_mask(self, shape: tuple[int, ...]) -> None:
        mask = np.full(shape[:2], 255, np.uint8)
        scale = np.array([shape[1] - 1, shape[0] - 1], np.float64)
        for polygon in self.config.mask:
            points = np.round(np.array(polygon, np.float64) * scale).astype(np.int32)
            cv2.fillPoly(mask, [points], 0)
        self._mask = mask
        self._unmasked = max(1, int(np.count_nonzero(mask)))

    def reset(self) -> None:
        """Forget the learnt background (the next frames warm up again)."""
        self._background = None
        self._seen = 0

    def check(self, frame: Frame) -> MotionResult:
        """Score one frame and learn from it."""
        grey = self._prepare(frame.image)
        if self._background is None or self._background.shape != grey.shape:
            self._build_mask(grey.shape)
            self._background = grey.astype(np.float32)
            self._seen = 1
            return MotionResult(frame.camera, frame.index, False, 0.0, 0.0, False)
        assert self._mask is not None
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        _, changed_mask = cv2.threshold(diff, self.config.threshold - 1, 255, cv2.THRESH_BINARY)
        changed_mask = cv2.bitwise_and(changed_mask, self._mask)
        changed = np.count_nonzero(changed_mask) / self._unmasked
        if changed >= self.config.scene_change:
            self._background = grey.astype(np.float32)
            self._seen = 1
            return MotionResult(frame.camera, frame.index, False, changed, changed, True)
        changed_mask = cv2.dilate(changed_mask, _KERNEL, iterations=2)
        changed_mask = cv2.bitwise_and(changed_mask, self._mask)
        count, _, stats, _ = cv2.connectedComponentsWithStats(changed_mask, connectivity=8)
        largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
        area = largest / self._unmasked
        motion = self._seen >= self.config.warmup_frames and area >= self.config.min_area
        cv2.accumulateWeighted(grey, self._background, _BACKGROUND_ALPHA)
        self._seen += 1
        return MotionResult(frame.camera, frame.index, motion, area, changed, False)
