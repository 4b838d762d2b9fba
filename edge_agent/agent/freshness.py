"""How old a frame is, and when it is too old to answer from: a camera that is reconnecting or has ended keeps
its last frame, and an answer about it would be an answer about the past."""

from __future__ import annotations

import time

from edge_agent.config import Config
from edge_agent.messages import Frame


def frame_age_s(frame: Frame, now: float | None = None) -> float:
    """Seconds since the frame was captured (monotonic clock: a clock step does not change it)."""
    return max(0.0, (time.monotonic() if now is None else now) - frame.monotonic)


def frame_age_limit_s(config: Config, camera: str) -> float:
    """The camera's `max_frame_age_s` (its default for a camera not in the config)."""
    for camera_config in config.cameras:
        if camera_config.name == camera:
            return camera_config.frame_age_limit_s
    return 10.0


def stale_frame(config: Config, frame: Frame, age_s: float) -> str | None:
    """Why `frame` is too old to answer from (naming the camera and the age), or None when it is fresh enough."""
    limit = frame_age_limit_s(config, frame.camera)
    if age_s <= limit:
        return None
    return (
        f"camera {frame.camera}: its newest frame is {age_s:.1f} s old, older than max_frame_age_s ({limit:g} s); "
        "the camera is not delivering frames (reconnecting or ended), so there is no answer about now"
    )
