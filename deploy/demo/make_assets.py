"""Rebuild the demo's camera video and microphone recording (committed; needs OpenCV, espeak-ng and sox)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
FPS, SECONDS, WIDTH, HEIGHT = 10, 12, 320, 240


def garage(index: int) -> np.ndarray:
    """A garage front whose door rolls up between 4 s and 7 s."""
    frame = np.full((HEIGHT, WIDTH, 3), (150, 170, 180), np.uint8)  # wall
    cv2.rectangle(frame, (0, 200), (WIDTH, HEIGHT), (90, 90, 90), -1)  # driveway
    cv2.rectangle(frame, (70, 60), (250, 200), (40, 40, 40), -1)  # the opening
    t = index / FPS
    opened = min(max((t - 4.0) / 3.0, 0.0), 1.0)
    bottom = int(200 - 135 * opened)
    if bottom > 62:
        cv2.rectangle(frame, (72, 62), (248, bottom), (200, 205, 210), -1)  # the door
        for y in range(70, bottom, 16):
            cv2.line(frame, (72, y), (248, y), (170, 175, 180), 2)
    cv2.putText(frame, f"{t:4.1f}s", (250, 230), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return frame


def video(path: Path) -> None:
    """Encode the garage scene."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for index in range(FPS * SECONDS):
        writer.write(garage(index))
    writer.release()


def voice(path: Path, text: str = "Turn on the kitchen light.") -> None:
    """espeak-ng speech at 16 kHz mono with 1.5 s of silence on each side."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        subprocess.run(
            ["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path), "pad", "1.5", "1.5"], check=True
        )


if __name__ == "__main__":
    video(HERE / "garage.mp4")
    voice(HERE / "voice.wav")
    sys.exit(0)
