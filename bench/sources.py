"""Camera + motion gate cost: a 30 fps file read at a 2 fps cap for N minutes, beside a plain OpenCV loop.

Prints CPU use (% of one core, from process CPU time), RSS at start, after one minute and at the end,
frames delivered, and the motion gate's cost per frame; the peer is the naive loop (cv2.VideoCapture.read()
of every frame, then throwing away what the cap does not need) run on the same file in the same process.
Run: .venv/bin/python bench/sources.py --minutes 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rig.camera import write_video

from edge_agent.config import CameraConfig, MotionConfig
from edge_agent.gating.motion import MotionDetector
from edge_agent.messages import Frame
from edge_agent.sources.camera import Camera


def scene(index: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A mostly still scene where a square crosses now and then."""
    frame = np.full((height, width, 3), 90, np.uint8)
    cv2.putText(frame, "garage", (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (200, 200, 200), 3)
    if (index // 90) % 3 == 0:  # moves during one third of the time
        x = (index * 12) % (width - 80)
        cv2.rectangle(frame, (x, 200), (x + 80, 280), (255, 255, 255), -1)
    return frame


def measure(seconds: float, work: threading.Thread, stop: threading.Event) -> tuple[float, float]:
    """Run `work` for `seconds`; returns (cpu % of one core, wall seconds)."""
    process = psutil.Process()
    cpu0, wall0 = sum(process.cpu_times()[:2]), time.monotonic()
    work.start()
    stop.wait(seconds)
    stop.set()
    work.join()
    wall = time.monotonic() - wall0
    return 100 * (sum(process.cpu_times()[:2]) - cpu0) / wall, wall


def ours(video: Path, seconds: float) -> dict[str, float]:
    """Our camera (grab/retrieve with the fps cap) plus the motion gate on every delivered frame."""
    detector = MotionDetector(MotionConfig())
    costs: list[float] = []
    motions = 0

    def on_frame(frame: Frame) -> None:
        nonlocal motions
        started = time.perf_counter()
        motions += detector.check(frame).motion
        costs.append(time.perf_counter() - started)

    camera = Camera(CameraConfig(name="bench", source=str(video), fps=2), on_frame)
    stop = threading.Event()
    rss: list[float] = []

    def sample_rss() -> None:  # once a minute; the first sample follows one minute of warm-up
        while not stop.wait(60):
            rss.append(psutil.Process().memory_info().rss / 2**20)

    rss0 = psutil.Process().memory_info().rss / 2**20
    threading.Thread(target=sample_rss, daemon=True).start()
    cpu, wall = measure(seconds, threading.Thread(target=camera.run, args=(stop,)), stop)
    rss.append(psutil.Process().memory_info().rss / 2**20)
    return {
        "cpu_pct": cpu,
        "fps": len(costs) / wall,
        "rss_start_mb": rss0,
        "rss_1min_mb": rss[0],
        "rss_end_mb": rss[-1],
        "motion_ms_mean": 1000 * statistics.fmean(costs),
        "motion_ms_p95": 1000 * sorted(costs)[int(0.95 * len(costs))],
        "motion_frames": motions,
    }


def peer(video: Path, seconds: float) -> dict[str, float]:
    """The naive loop: read() (decode + convert) every frame in real time, keep 2 per second."""
    stop = threading.Event()
    kept = 0

    def loop() -> None:
        nonlocal kept
        capture = cv2.VideoCapture(str(video))
        due = next_keep = time.monotonic()
        while not stop.is_set():
            ok, _frame = capture.read()
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            due += 1 / 30
            time.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() >= next_keep:
                kept += 1
                next_keep += 0.5
        capture.release()

    cpu, wall = measure(seconds, threading.Thread(target=loop), stop)
    return {"cpu_pct": cpu, "fps": kept / wall}


def main() -> None:
    """Run both and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of our run (default 10)")
    parser.add_argument("--peer-minutes", type=float, default=1.0, help="length of the peer's run (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "scene.mp4", frames=600, fps=30.0, frame_fn=scene)
        print(
            f"source: 640x480 @ 30 fps ({video.stat().st_size // 1024} KiB mp4, looped), cap 2 fps, "
            f"{os.cpu_count()} cores; cpu % is of one core"
        )
        mine = ours(video, args.minutes * 60)
        naive = peer(video, args.peer_minutes * 60)
    print(
        f"edge-agent camera+motion: {mine['cpu_pct']:.1f}% cpu, {mine['fps']:.2f} frames/s delivered, "
        f"RSS {mine['rss_start_mb']:.1f} MB at start, {mine['rss_1min_mb']:.1f} MB after 1 min, "
        f"{mine['rss_end_mb']:.1f} MB after {args.minutes:g} min"
    )
    print(
        f"motion gate: {mine['motion_ms_mean']:.3f} ms/frame mean, {mine['motion_ms_p95']:.3f} ms p95 "
        f"(frames with motion: {mine['motion_frames']:.0f})"
    )
    print(f"peer (read() every frame, no gate): {naive['cpu_pct']:.1f}% cpu, {naive['fps']:.2f} frames/s kept")
    print(f"ratio cpu edge-agent/peer: {mine['cpu_pct'] / naive['cpu_pct']:.2f}")


if __name__ == "__main__":
    main()
