"""The degradation ladder, driven through the real probes reading a fake sysfs/procfs tree that the tests heat up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.config.model import ModelConfig
from edge_agent.config.node import HealthConfig
from edge_agent.health.degrade import (
    DegradationLadder,
    DegradationState,
    Level,
    Limits,
    Reading,
    effective_limits,
    lower_image_budget,
)
from edge_agent.health.probes import Probes

REPO = Path(__file__).resolve().parents[2]
CONFIG = HealthConfig(
    temperature_high_c=80,
    temperature_critical_c=85,
    temperature_hysteresis_c=5,
    memory_low_mb=300,
    memory_hysteresis_mb=200,
    step_interval_s=10,
    cooldown_s=60,
)
BASE = Limits(image_budget=280, max_new_tokens=256)


class Board:
    """A fake Pi under `root`: one CPU thermal zone, the firmware's throttling word and /proc/meminfo."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.probes = Probes(root)
        self.celsius, self.throttled, self.available_mb = 55.0, 0, 4000
        self.set()

    def _write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def set(self, celsius: float | None = None, throttled: int | None = None, available_mb: int | None = None) -> None:
        """Change some readings (the others stay) and write the files the probes read."""
        self.celsius = self.celsius if celsius is None else celsius
        self.throttled = self.throttled if throttled is None else throttled
        self.available_mb = self.available_mb if available_mb is None else available_mb
        self._write("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
        self._write("sys/class/thermal/thermal_zone0/temp", f"{round(self.celsius * 1000)}\n")
        self._write("sys/class/thermal/thermal_zone1/type", "rp1_adc\n")
        self._write("sys/class/thermal/thermal_zone1/temp", "40000\n")
        self._write("sys/devices/platform/soc/soc:firmware/get_throttled", f"{self.throttled:x}\n")
        self._write("proc/self/status", "Name:\tpython\nVmRSS:\t  512000 kB\n")
        self._write(
            "proc/meminfo",
            f"MemTotal: 8000000 kB\nMemFree: 100000 kB\nMemAvailable: {self.available_mb * 1024} kB\n"
            "SwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )

    def reading(self) -> Reading:
        return Reading.from_probes(self.probes)


class Run:
    """A ladder ticked every `tick_s` seconds of a fake clock, remembering every state."""

    def __init__(self, board: Board, config: HealthConfig = CONFIG, fallback: bool = True, tick_s: float = 5) -> None:
        self.board = board
        self.ladder = DegradationLadder(config, BASE, fallback_available=fallback)
        self.now = 1000.0
        self.tick_s = tick_s
        self.states: list[DegradationState] = []

    def ticks(
        self, count: int, celsius: float | None = None, throttled: int | None = None, available_mb: int | None = None
    ) -> DegradationState:
        self.board.set(celsius, throttled, available_mb)
        for _ in range(count):
            self.now += self.tick_s
            self.states.append(self.ladder.update(self.board.reading(), self.now))
        return self.states[-1]

    def levels(self) -> list[int]:
        return [int(s.level) for s in self.states]

    def changes(self) -> list[int]:
        return [int(s.level) for s in self.states if s.changed]


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(tmp_path)


def test_readings_come_from_the_fake_tree(board: Board) -> None:
    board.set(celsius=81.25, throttled=0x80008, available_mb=1234)
    assert board.reading() == Reading(81.25, frozenset({"soft_temperature_limit"}), 1234.0, 500.0)
    assert Reading.from_probes(Probes(board.root / "absent")) == Reading(None, frozenset(), None)


def test_rising_temperature_walks_down_one_step_per_interval(board: Board) -> None:
    run = Run(board)
    for celsius in (60, 70, 79.9):
        assert run.ticks(1, celsius=celsius).level == Level.NORMAL
    state = run.ticks(1, celsius=80.0)
    assert (state.level, state.changed, state.reason) == (1, True, "temperature 80.0 °C >= 80.0 °C")
    assert state.limits.image_budget == 140
    run.ticks(1, celsius=82.3)  # 5 s later: too soon for the next step
    assert run.levels()[-2:] == [1, 1] and not run.states[-1].changed
    run.ticks(10)
    assert run.levels()[-10:] == [2, 2, 3, 3, 4, 4, 5, 5, 5, 5]  # heat alone stops at pausing the watch tasks
    assert run.states[-1].reason == "temperature 82.3 °C >= 80.0 °C" and run.states[-1].limits.watch_paused


def test_without_a_fallback_model_the_swap_level_is_skipped(board: Board) -> None:
    run = Run(board, fallback=False)
    run.ticks(12, celsius=81)
    assert run.changes() == [1, 2, 3, 5]
    assert not any(s.limits.use_fallback_model for s in run.states)


def test_cooling_walks_back_up_after_the_hysteresis_and_each_cooldown(board: Board) -> None:
    run = Run(board)
    run.ticks(10, celsius=83)
    assert run.ladder.level == Level.PAUSE_WATCH
    run.ticks(60, celsius=77)  # below 80 but not below 80 - 5: five minutes and nothing moves
    assert set(run.levels()[-60:]) == {5}
    run.ticks(12, celsius=74.9)
    assert set(run.levels()[-12:]) == {5}  # below 75 °C since the first of these ticks: 55 s
    run.ticks(1)
    assert run.states[-1].level == 4 and run.states[-1].changed
    assert run.states[-1].reason == "recovering after 60 s below the thresholds: temperature 74.9 °C < 75.0 °C, " + (
        "memory available 4000 MB >= 500 MB"
    )
    run.ticks(12 * 4)
    assert run.changes()[-4:] == [3, 2, 1, 0] and run.states[-1].level == Level.NORMAL
    assert [i for i, s in enumerate(run.states) if s.changed][-4:] == [94, 106, 118, 130]  # one step per 60 s
    assert run.states[-1].limits == BASE


def test_a_temperature_oscillating_around_the_threshold_does_not_flap(board: Board) -> None:
    run = Run(board)
    for _ in range(180):  # 30 minutes, 79.5 and 80.5 °C on alternate ticks
        run.ticks(1, celsius=79.5)
        run.ticks(1, celsius=80.5)
    assert run.changes() == [1, 2, 3, 4, 5]  # only ever down, once per level
    for _ in range(180):  # then around the recovery threshold: never clear for a whole cool-down
        run.ticks(1, celsius=74.5)
        run.ticks(1, celsius=75.5)
    assert run.changes() == [1, 2, 3, 4, 5]
    for _ in range(90):  # below the recovery threshold, with a spike into the band every 50 s
        run.ticks(9, celsius=70)
        run.ticks(1, celsius=76)
    assert run.ladder.level == Level.PAUSE_WATCH


def test_a_critical_temperature_jumps_to_pausing_everything(board: Board) -> None:
    run = Run(board)
    state = run.ticks(1, celsius=86)
    assert (state.level, state.name, state.changed) == (6, "pause_all", True)
    assert state.reason == "temperature 86.0 °C >= 85.0 °C (critical)" and state.limits.all_paused
    run.ticks(40, celsius=82)  # still hot: stays paused
    assert set(run.levels()) == {6}
    run.ticks(12 * 6 + 1, celsius=60)
    assert run.changes() == [6, 5, 4, 3, 2, 1, 0]


def test_memory_pressure_goes_straight_to_the_smaller_model(board: Board) -> None:
    run = Run(board)
    state = run.ticks(1, celsius=60, available_mb=250)
    assert (state.level, state.changed, state.limits.use_fallback_model) == (4, True, True)
    assert state.reason == "memory available 250 MB < 300 MB"
    run.ticks(2)
    assert run.levels() == [4, 4, 5]  # still short after the swap: pause the watch tasks, after step_interval_s
    run.ticks(100, available_mb=450)  # more than the low mark, not yet past the hysteresis
    assert run.ladder.level == Level.PAUSE_WATCH
    run.ticks(12 * 5 + 1, available_mb=3000)
    assert run.changes() == [4, 5, 4, 3, 2, 1, 0]


def test_the_primary_model_comes_back_only_when_it_has_room(board: Board) -> None:
    run = Run(board)
    run.ladder = DegradationLadder(CONFIG, BASE, fallback_available=True, swap_back_mb=1500)
    run.ticks(1, celsius=60, available_mb=250)
    run.ticks(100, available_mb=1900)  # clear of the thresholds, but the primary needs 300 + 200 + 1500 MB
    assert run.changes() == [4] and run.ladder.level == Level.FALLBACK_MODEL
    run.ticks(1, available_mb=2000)
    assert run.changes() == [4, 3]


def test_a_measured_swap_holds_the_primary_back_where_the_estimate_was_too_small(board: Board) -> None:
    run = Run(board)
    run.ladder.swap_back_mb = 100  # the estimate: the primary takes 100 MB more; it really takes 1000
    run.ticks(1, celsius=60, available_mb=200)
    assert run.ladder.level == Level.FALLBACK_MODEL
    run.ladder.swap_requested(True, Reading(60, memory_available_mb=200, process_rss_mb=1600))
    assert run.ladder.swapping is True
    run.ladder.swap_settled(Reading(60, memory_available_mb=2500, process_rss_mb=600))  # another process ended too
    assert run.ladder.swapping is None and run.ladder.measured_swap_back_mb == 1000  # only our own memory counts
    run.ticks(100, available_mb=1200)  # 300 + 200 + 100 would be enough by the estimate: not by the measure
    assert run.changes() == [4]
    run.ticks(1, available_mb=1500)
    assert run.changes() == [4, 3]
    run.ladder.swap_requested(False, Reading(60, memory_available_mb=1500, process_rss_mb=600))
    run.ladder.swap_settled(Reading(60, process_rss_mb=1900), happened=False)  # the load failed: no measure
    assert run.ladder.measured_swap_back_mb == 1000
    run.ladder.swap_requested(False, Reading(60, memory_available_mb=1500, process_rss_mb=600))
    run.ladder.swap_settled(Reading(60, process_rss_mb=1800))  # the primary took 1200: the larger measure wins
    assert run.ladder.measured_swap_back_mb == 1200
    run.ticks(12 * 3, available_mb=3000)
    assert run.changes() == [4, 3, 2, 1, 0] and run.ladder.measured_swap_back_mb == 0  # the episode is over


def test_reconfigure_takes_new_thresholds_and_fallback_and_keeps_the_level(board: Board) -> None:
    run = Run(board, fallback=False)
    run.ticks(1, celsius=60, available_mb=400)
    assert run.ladder.level == Level.NORMAL  # 400 MB >= memory_low_mb 300
    stricter = CONFIG.model_copy(update={"memory_low_mb": 500})
    assert run.ladder.reconfigure(stricter, BASE, fallback_available=True).level == Level.NORMAL
    state = run.ticks(1)
    assert (state.level, state.reason) == (4, "memory available 400 MB < 500 MB")  # straight to the fallback
    smaller = Limits(image_budget=140, max_new_tokens=64)
    state = run.ladder.reconfigure(stricter, smaller, fallback_available=False)  # the fallback was removed
    assert (state.level, state.limits.use_fallback_model, state.limits.max_new_tokens) == (3, False, 32)


def test_memory_pressure_without_a_fallback_steps_down(board: Board) -> None:
    run = Run(board, fallback=False)
    run.ticks(8, celsius=60, available_mb=250)
    assert run.changes() == [1, 2, 3, 5]


def test_throttling_flags_set_now_count_as_hot(board: Board) -> None:
    run = Run(board)
    state = run.ticks(1, celsius=60, throttled=0x80008)  # soft temperature limit, now and since boot
    assert (state.level, state.reason) == (1, "throttled now: soft_temperature_limit")
    state = run.ticks(2, celsius=81, throttled=0x6)
    assert state.reason == "temperature 81.0 °C >= 80.0 °C; throttled now: frequency_capped, throttled"
    quiet = Run(board)
    quiet.ticks(30, celsius=60, throttled=0x50001)  # under-voltage (not counted by default), old events
    assert set(quiet.levels()) == {0}
    strict = Run(board, HealthConfig(throttle_flags=["under_voltage"]))
    assert strict.ticks(1).reason == "throttled now: under_voltage"


def test_unknown_readings_leave_the_level_alone(tmp_path: Path) -> None:
    ladder = DegradationLadder(CONFIG, BASE)
    for now in range(0, 600, 5):
        state = ladder.update(Reading.from_probes(Probes(tmp_path)), float(now))
        assert (state.level, state.reason, state.changed) == (0, "normal", False)


def test_limits_at_each_level() -> None:
    base = Limits.from_model_config(ModelConfig(path=REPO / "models/tiny-gemma4", image_budget=560))
    assert (base.image_budget, base.max_new_tokens) == (560, 256)
    by_level = {level: effective_limits(base, level, 3.0, fallback_available=True) for level in Level}
    assert by_level[Level.NORMAL] == base
    assert by_level[Level.LOWER_IMAGE_BUDGET] == Limits(280, 256)
    assert by_level[Level.LOWER_WATCH_RATE] == Limits(280, 256, watch_interval_factor=3.0)
    assert by_level[Level.SHORTER_ANSWERS] == Limits(280, 128, 3.0)
    assert by_level[Level.FALLBACK_MODEL] == Limits(280, 128, 3.0, use_fallback_model=True)
    assert by_level[Level.PAUSE_WATCH] == Limits(280, 128, 3.0, True, watch_paused=True)
    assert by_level[Level.PAUSE_ALL] == Limits(280, 128, 3.0, True, True, all_paused=True)
    assert not effective_limits(base, Level.PAUSE_ALL, 3.0, fallback_available=False).use_fallback_model
    assert [lower_image_budget(b) for b in (70, 140, 280, 560, 1120)] == [70, 70, 140, 280, 560]
    state = DegradationState(Level.LOWER_WATCH_RATE, "r", by_level[Level.LOWER_WATCH_RATE], True)
    assert (state.image_budget(1120), state.watch_interval_s(30)) == (560, 90)
    assert json.loads(json.dumps(state.to_json())) == {
        "level": 2,
        "name": "lower_watch_rate",
        "reason": "r",
        "image_budget": 280,
        "max_new_tokens": 256,
        "watch_interval_factor": 3.0,
        "use_fallback_model": False,
        "watch_paused": False,
        "all_paused": False,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temperature_hysteresis_c": -1}, "greater than or equal to 0"),
        (
            {"temperature_high_c": 30, "temperature_critical_c": 40, "temperature_hysteresis_c": 30},
            "'temperature_hysteresis_c' must be below 'temperature_high_c'",
        ),
        ({"temperature_hysteresis_c": 51}, "less than or equal to 50"),
        ({"memory_hysteresis_mb": -5}, "greater than or equal to 0"),
        ({"cooldown_s": 0}, "greater than 0"),
        ({"step_interval_s": 0}, "greater than 0"),
        ({"watch_interval_factor": 0.5}, "greater than or equal to 1"),
        ({"throttle_flags": ["hot"]}, "throttle_flags"),
        ({"admission_margin_pct": -1}, "greater than or equal to 0"),
    ],
)
def test_health_config_validation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HealthConfig.model_validate(fields)
