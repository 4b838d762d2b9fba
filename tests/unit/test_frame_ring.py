"""The clip ring: bounded in bytes and seconds under a flood from capture threads, oldest first, time windows, RSS."""

from __future__ import annotations

import gc
import itertools
import logging
import threading

import cv2
import numpy as np
import psutil
import pytest

from edge_agent.messages import Frame
from edge_agent.sources.frame_ring import ENTRY_OVERHEAD_BYTES, FrameRing, StoredFrame, decode, encode_frame

RNG = np.random.default_rng(7)


def noise_frame(index: int, at: float, width: int = 160, height: int = 120, camera: str = "yard") -> Frame:
    """A frame of noise (JPEG cannot squeeze it much: each kept frame costs real bytes)."""
    image = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Frame(camera, image, index, 1_700_000_000.0 + at, at)


def stored(index: int, at: float, size: int) -> StoredFrame:
    return StoredFrame("yard", index, 1_700_000_000.0 + at, at, bytes(size))


def test_bytes_bound_holds_under_a_flood_from_several_threads() -> None:
    ring = FrameRing(seconds=1e9, fps=1e9, max_bytes=200_000)
    over: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the loop reading while capture threads put
        while not stop.is_set():
            if ring.bytes > ring.max_bytes:
                over.append(ring.bytes)
            ring.window(0.0, 1e12)

    def flood(worker: int) -> None:
        sizes = np.random.default_rng(worker).integers(1, 30_000, 2000)
        for n, size in enumerate(sizes):
            ring.put(stored(worker * 10_000 + n, worker * 10_000 + n, int(size)))

    reader = threading.Thread(target=watch)
    reader.start()
    threads = [threading.Thread(target=flood, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    reader.join()
    kept = ring.window(0.0, 1e12)
    assert not over
    assert ring.bytes == sum(frame.cost for frame in kept) <= ring.max_bytes
    assert ring.bytes > ring.max_bytes - 30_000 - ENTRY_OVERHEAD_BYTES  # full: only the oldest went
    assert len(kept) + ring.dropped == 8000


def test_oldest_frames_go_first_and_the_rest_stay_in_order() -> None:
    ring = FrameRing(seconds=1e9, fps=1e9, max_bytes=10 * (1000 + ENTRY_OVERHEAD_BYTES))
    for n in range(25):
        assert ring.put(stored(n, float(n), 1000))
    assert [frame.index for frame in ring.window(0, 100)] == list(range(15, 25))
    assert ring.dropped == 15 and len(ring) == 10


def test_frames_older_than_the_kept_seconds_are_dropped() -> None:
    ring = FrameRing(seconds=5.0, fps=1e9, max_bytes=10**9)
    for n in range(20):
        ring.put(stored(n, n * 1.0, 10))
    assert [frame.monotonic for frame in ring.window(0, 100)] == [14.0, 15.0, 16.0, 17.0, 18.0, 19.0]
    ring.keep_seconds(8.0)
    ring.put(stored(20, 20.0, 10))
    assert ring.window(0, 100)[0].monotonic == 14.0  # nothing newer than 20 - 8 was dropped


def test_a_window_selects_by_capture_time_inclusive() -> None:
    ring = FrameRing(seconds=1e9, fps=1e9, max_bytes=10**9)
    for n in range(10):
        ring.put(stored(n, 100.0 + n * 0.5, 10))
    assert [f.index for f in ring.window(101.0, 102.5)] == [2, 3, 4, 5]
    assert ring.window(200.0, 300.0) == [] and ring.window(0.0, 99.9) == []
    newest = ring.newest()
    assert newest is not None and newest.index == 9


def test_offered_frames_are_kept_at_the_ring_rate_downscaled_and_decodable() -> None:
    ring = FrameRing(seconds=60.0, fps=2.0, max_bytes=10**8, width=80, quality=70)
    kept = [ring.offer(noise_frame(n, n * 0.1)) for n in range(50)]  # a 10 fps camera for 5 s
    frames = ring.window(0, 100)
    assert sum(kept) == len(frames) == 10
    times = [f.monotonic for f in frames]
    assert all(b - a == pytest.approx(0.5) for a, b in itertools.pairwise(times))
    image = decode(frames[0])
    assert image.shape == (60, 80, 3)  # 160x120 scaled to the ring's width, aspect kept
    assert frames[0].captured_at == 1_700_000_000.0 + frames[0].monotonic


def test_after_a_gap_the_ring_does_not_burst_to_catch_up() -> None:
    ring = FrameRing(seconds=60.0, fps=1.0, max_bytes=10**8)
    ring.offer(noise_frame(0, 0.0))
    kept = [ring.offer(noise_frame(n, 10.0 + n * 0.1)) for n in range(10)]  # frames again after 10 s
    assert kept == [True] + [False] * 9


def test_a_frame_larger_than_the_whole_bound_is_refused_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    ring = FrameRing(seconds=60.0, fps=1e9, max_bytes=5000)
    ring.put(stored(0, 0.0, 100))
    with caplog.at_level(logging.WARNING):
        assert not ring.put(stored(1, 1.0, 10_000))
        assert not ring.put(stored(2, 2.0, 10_000))
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "larger than the whole clip buffer" in caplog.records[0].message
    assert [f.index for f in ring.window(0, 10)] == [0] and ring.refused == 2


def test_an_empty_frame_is_not_kept() -> None:
    frame = Frame("yard", np.zeros((0, 0, 3), np.uint8), 1, 0.0, 0.0)
    assert encode_frame(frame, 640, 80) is None
    ring = FrameRing(seconds=60.0, fps=1.0, max_bytes=10**6)
    assert not ring.offer(frame) and ring.refused == 1


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        FrameRing(seconds=0, fps=1, max_bytes=1)


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def test_rss_of_a_ring_stays_within_its_configured_bytes() -> None:
    max_bytes = 4 * 1024 * 1024
    ring = FrameRing(seconds=1e9, fps=1e9, max_bytes=max_bytes, width=160, quality=95)
    images = [RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(8)]
    for n in range(50):  # warm up OpenCV's encoder and the allocator before the baseline
        cv2.imencode(".jpg", images[n % 8])
    before = rss()
    for n in range(5000):
        ring.offer(Frame("yard", images[n % 8], n, float(n), float(n)))
    grown = rss() - before
    # what the process holds grew by the ring's bound, not by 5000 frames' JPEGs (~20 KB each: ~100 MB)
    assert grown <= max_bytes * 1.25 + 2 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MB for a 4 MB ring"
    kept = ring.window(0, 1e9)
    assert len(kept) + ring.dropped == 5000 and ring.dropped > 4000  # the bound was hit over and over
    assert ring.bytes <= max_bytes
