"""Each camera's newest frame, downscaled, retained on `camera/<name>/frame` at most every `frame_publish_s`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
BASE = "edge_agent/frames1/camera"


def test_frames_are_downscaled_retained_and_rate_bounded(
    mosquitto: Mosquitto, write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    (tmp_path / "model").mkdir()
    video = REPO / "deploy" / "demo" / "garage.mp4"
    config = write_config(
        f"""
        device: {{id: frames1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp_path / "spool.db"}}}
        model: {{path: {tmp_path / "model"}}}
        cameras:
          - {{name: big, source: {video}, fps: 5, width: 1280, height: 720, frame_publish_s: 2}}
          - {{name: quiet, source: {video}, fps: 5, frame_publish_s: 0}}
        """
    )
    sub = Subscriber(mosquitto.host, mosquitto.port, [f"{BASE}/+/frame"])
    daemon = Daemon(config)
    try:
        first = sub.wait_for(lambda messages: len(messages) >= 1, timeout_s=60)[0]
        started = time.monotonic()
        sub.wait_for(lambda messages: len(messages) >= 3, timeout_s=30)
        assert time.monotonic() - started >= 3.5  # two more, each at least ~2 s after the one before
        time.sleep(2)
        assert len(sub.messages) <= 5  # about 8 s of a 5 fps camera: 40 frames, at most 5 published
        assert {message.topic for message in sub.messages} == {f"{BASE}/big/frame"}  # 0 = off
        image = cv2.imdecode(np.frombuffer(first.payload, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (360, 640)  # 1280x720 scaled to 640 wide
        late = Subscriber(mosquitto.host, mosquitto.port, [f"{BASE}/big/frame"])
        (kept,) = late.wait_for(lambda messages: len(messages) >= 1, timeout_s=10)[:1]
        late.close()
        assert kept.retain and kept.payload[:3] == b"\xff\xd8\xff"
    finally:
        assert daemon.stop() == 0
        sub.close()
