"""DeviceClock: a sound card's drift is tolerated, a clockless device is caught and then held to real time."""

from __future__ import annotations

import time

import pytest

from edge_agent.sources.audio import DeviceClock


def clock_after(hours: float, audio_s: float, rate: int = 48000) -> DeviceClock:
    clock = DeviceClock(rate)
    clock.opened = time.monotonic() - hours * 3600
    clock.frames = int(audio_s * rate)
    return clock


def test_a_card_running_a_little_fast_for_hours_is_not_paced() -> None:
    drifted = clock_after(hours=10, audio_s=10 * 3600 * 1.0005)  # 500 ppm fast: 18 s ahead after 10 h
    assert drifted.runs_ahead(strict=False) is None


def test_a_clockless_device_is_caught_at_once_and_then_held_strictly() -> None:
    burst = clock_after(hours=0, audio_s=2.0)  # two seconds of audio in no time
    assert burst.runs_ahead(strict=False) == pytest.approx(2.0, abs=0.05)
    paced = clock_after(hours=1, audio_s=3600 + 0.5)
    assert paced.runs_ahead(strict=False) is None
    assert paced.runs_ahead(strict=True) == pytest.approx(0.5, abs=0.05)


def test_a_real_time_device_is_never_ahead() -> None:
    assert clock_after(hours=0.5, audio_s=1800).runs_ahead(strict=True) is None
