"""The degradation ladder: temperature, throttling and memory pressure step the node down, cool-down steps it up."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import IntEnum
from typing import Any

from edge_agent.config.model import ModelConfig
from edge_agent.config.node import HealthConfig
from edge_agent.health.probes import Memory, Probes, Throttling

IMAGE_BUDGETS = (70, 140, 280, 560, 1120)


class Level(IntEnum):
    """Rungs of the ladder; each keeps the restrictions of the ones before it."""

    NORMAL = 0
    LOWER_IMAGE_BUDGET = 1
    LOWER_WATCH_RATE = 2
    SHORTER_ANSWERS = 3
    FALLBACK_MODEL = 4
    PAUSE_WATCH = 5
    PAUSE_ALL = 6


# Heat and memory pressure step down at most to here; only a critical temperature pauses everything.
_LOWEST_STEPPED = Level.PAUSE_WATCH


@dataclass(frozen=True)
class Reading:
    """What the ladder looks at on each tick (None where the node cannot tell)."""

    temperature_c: float | None
    throttled_now: frozenset[str] = frozenset()
    memory_available_mb: float | None = None
    process_rss_mb: float | None = None  # what this process holds (the loaded model is most of it)

    @classmethod
    def from_probes(cls, probes: Probes) -> Reading:
        """The hottest thermal zone, the throttling flags set now and the available memory."""
        return cls.of(probes.hottest_celsius(), probes.throttling(), probes.memory())

    @classmethod
    def of(cls, hottest_c: float | None, throttling: Throttling | None, memory: Memory | None) -> Reading:
        """A reading from probe results already taken."""
        return cls(
            temperature_c=hottest_c,
            throttled_now=throttling.now if throttling else frozenset(),
            memory_available_mb=memory.available_mb if memory else None,
            process_rss_mb=memory.process_rss_mb if memory else None,
        )


@dataclass(frozen=True)
class Limits:
    """What the node may do: the configured values at level 0, the degraded ones below."""

    image_budget: int
    max_new_tokens: int
    watch_interval_factor: float = 1.0
    use_fallback_model: bool = False
    watch_paused: bool = False
    all_paused: bool = False

    @classmethod
    def from_model_config(cls, model: ModelConfig) -> Limits:
        """Level-0 limits from the model section."""
        return cls(image_budget=model.image_budget, max_new_tokens=model.max_new_tokens)


def lower_image_budget(budget: int) -> int:
    """The next smaller image token budget (70 stays 70)."""
    smaller = [b for b in IMAGE_BUDGETS if b < budget]
    return smaller[-1] if smaller else min(budget, IMAGE_BUDGETS[0])


def effective_limits(base: Limits, level: Level, watch_interval_factor: float, fallback_available: bool) -> Limits:
    """The level-0 `base` limits restricted as `level` demands."""
    return replace(
        base,
        image_budget=lower_image_budget(base.image_budget) if level >= Level.LOWER_IMAGE_BUDGET else base.image_budget,
        watch_interval_factor=watch_interval_factor if level >= Level.LOWER_WATCH_RATE else 1.0,
        max_new_tokens=max(1, base.max_new_tokens // 2) if level >= Level.SHORTER_ANSWERS else base.max_new_tokens,
        use_fallback_model=fallback_available and level >= Level.FALLBACK_MODEL,
        watch_paused=level >= Level.PAUSE_WATCH,
        all_paused=level >= Level.PAUSE_ALL,
    )


@dataclass(frozen=True)
class DegradationState:
    """The ladder's output after a tick; `changed` is True when the level moved on this tick."""

    level: Level
    reason: str
    limits: Limits
    changed: bool

    @property
    def name(self) -> str:
        """'normal', 'lower_image_budget', ... 'pause_all'."""
        return self.level.name.lower()

    def image_budget(self, configured: int) -> int:
        """A task's own image budget at this level."""
        return lower_image_budget(configured) if self.level >= Level.LOWER_IMAGE_BUDGET else configured

    def clip_frames(self, configured: int) -> int:
        """A clip question's frame count at this level: halved from lower_image_budget on, quartered from
        shorter_answers on, never below 1 (its per-frame budget steps down as `image_budget` does)."""
        if self.level >= Level.SHORTER_ANSWERS:
            return max(1, configured // 4)
        return max(1, configured // 2) if self.level >= Level.LOWER_IMAGE_BUDGET else configured

    def watch_interval_s(self, configured: float) -> float:
        """A watch task's own interval at this level."""
        return configured * self.limits.watch_interval_factor

    def to_json(self) -> dict[str, Any]:
        """Level, name, reason and limits, for logs and MQTT."""
        return {"level": int(self.level), "name": self.name, "reason": self.reason, **asdict(self.limits)}


@dataclass
class _Causes:
    critical: str | None = None
    pressure: list[str] = field(default_factory=list)  # too hot, throttled or low on memory
    memory_low: bool = False
    pending: bool = False  # below the thresholds but not yet past the hysteresis
    clear: list[str] = field(default_factory=list)


class DegradationLadder:
    """Walks the levels one reading at a time; the caller passes the time, so tests need no sleeping."""

    def __init__(
        self, config: HealthConfig, base: Limits, fallback_available: bool = False, swap_back_mb: float = 0.0
    ) -> None:
        """`swap_back_mb`: memory the primary model needs beyond the fallback (from the admission estimates)."""
        self.config = config
        self.base = base
        self.fallback_available = fallback_available
        self.swap_back_mb = swap_back_mb
        self.measured_swap_back_mb = 0.0  # what swaps since level 0 really freed or took (see swap_settled)
        self._level = Level.NORMAL
        self._reason = "normal"
        self._last_change: float | None = None
        self._clear_since: float | None = None
        self._swap: tuple[bool, float | None] | None = None  # a swap under way: its direction, our RSS before it

    def reconfigure(self, config: HealthConfig, base: Limits, fallback_available: bool) -> DegradationState:
        """New thresholds, level-0 limits and fallback (SIGHUP); the level and its timers stay, and the next
        reading moves from there under the new thresholds."""
        if fallback_available != self.fallback_available:
            self.measured_swap_back_mb = 0.0
        self.config, self.base, self.fallback_available = config, base, fallback_available
        if self._level == Level.FALLBACK_MODEL and not fallback_available:
            self._level = Level.SHORTER_ANSWERS  # level 4 means nothing without a fallback; pressure steps on to 5
        return self.state()

    @property
    def level(self) -> Level:
        """The current level."""
        return self._level

    def state(self, changed: bool = False) -> DegradationState:
        """The current level with its reason and limits."""
        limits = effective_limits(self.base, self._level, self.config.watch_interval_factor, self.fallback_available)
        return DegradationState(self._level, self._reason, limits, changed)

    def _causes(self, reading: Reading) -> _Causes:
        cfg = self.config
        causes = _Causes()
        temp, memory = reading.temperature_c, reading.memory_available_mb
        if temp is not None:
            cool_below = cfg.temperature_high_c - cfg.temperature_hysteresis_c
            if temp >= cfg.temperature_critical_c:
                causes.critical = f"temperature {temp:.1f} °C >= {cfg.temperature_critical_c:.1f} °C (critical)"
            elif temp >= cfg.temperature_high_c:
                causes.pressure.append(f"temperature {temp:.1f} °C >= {cfg.temperature_high_c:.1f} °C")
            elif temp >= cool_below:
                causes.pending = True
            else:
                causes.clear.append(f"temperature {temp:.1f} °C < {cool_below:.1f} °C")
        flags = sorted(reading.throttled_now & set(cfg.throttle_flags))
        if flags:
            causes.pressure.append(f"throttled now: {', '.join(flags)}")
        if memory is not None:
            enough = cfg.memory_low_mb + cfg.memory_hysteresis_mb
            if memory < cfg.memory_low_mb:
                causes.pressure.append(f"memory available {memory:.0f} MB < {cfg.memory_low_mb} MB")
                causes.memory_low = True
            elif memory < enough:
                causes.pending = True
            else:
                causes.clear.append(f"memory available {memory:.0f} MB >= {enough} MB")
        return causes

    def _step(self, level: Level, down: bool) -> Level:
        step = 1 if down else -1
        following = Level(level + step)
        if following == Level.FALLBACK_MODEL and not self.fallback_available:
            following = Level(following + step)  # without a fallback model, level 4 would change nothing
        return following

    def _room_for_primary(self, reading: Reading) -> bool:
        memory = reading.memory_available_mb
        swap_back = max(self.swap_back_mb, self.measured_swap_back_mb)
        enough = self.config.memory_low_mb + self.config.memory_hysteresis_mb + swap_back
        return memory is None or memory >= enough

    def swap_requested(self, to_fallback: bool, reading: Reading) -> None:
        """The node starts swapping models; `reading` is the last one before the swap."""
        self._swap = (to_fallback, reading.process_rss_mb)

    @property
    def swapping(self) -> bool | None:
        """The direction of the swap under way (True: to the fallback), or None."""
        return None if self._swap is None else self._swap[0]

    def swap_settled(self, reading: Reading, happened: bool = True) -> None:
        """The first reading after the swap finished (`happened` False: it failed): what the swap freed (down) or
        took (up) in this process's resident memory is measured, and the primary comes back only when that much is
        free beyond the thresholds (the admission estimate alone can be wrong). Our own RSS, not available memory,
        so that other processes starting or ending meanwhile do not count."""
        if self._swap is None:
            return
        (to_fallback, before), after = self._swap, reading.process_rss_mb
        self._swap = None
        if not happened or before is None or after is None:
            return
        # what the primary held beyond the fallback (down), or took (up); the larger counts until the ladder is back
        # at level 0, so a reading taken before the memory settled cannot let the primary back too early twice
        taken = before - after if to_fallback else after - before
        self.measured_swap_back_mb = max(self.measured_swap_back_mb, taken)

    def _since(self, now: float, moment: float | None) -> float:
        return float("inf") if moment is None else now - moment

    def update(self, reading: Reading, now: float) -> DegradationState:
        """Take one reading at monotonic time `now` and return the (possibly new) level."""
        causes = self._causes(reading)
        target, reason = self._level, self._reason
        if causes.critical or causes.pressure:
            self._clear_since = None
            reason = "; ".join([c for c in (causes.critical,) if c] + causes.pressure)
            if causes.critical:
                target = Level.PAUSE_ALL
            elif causes.memory_low and self.fallback_available and self._level < Level.FALLBACK_MODEL:
                target = Level.FALLBACK_MODEL  # the swap is what frees memory: go there at once
            elif self._level < _LOWEST_STEPPED and self._since(now, self._last_change) >= self.config.step_interval_s:
                target = self._step(self._level, down=True)
        elif causes.pending:
            self._clear_since = None
        elif self._level > Level.NORMAL:
            if self._clear_since is None:
                self._clear_since = now
            cooldown = self.config.cooldown_s
            cooled = now - self._clear_since >= cooldown and self._since(now, self._last_change) >= cooldown
            # leaving the fallback level reloads the primary model: only with room for it, or it would swap again
            if cooled and (self._level != Level.FALLBACK_MODEL or self._room_for_primary(reading)):
                target = self._step(self._level, down=False)
                reason = f"recovering after {cooldown:g} s below the thresholds: " + (
                    ", ".join(causes.clear) or "no readings"
                )
        if target == self._level:
            return self.state()
        self._level, self._reason, self._last_change = target, reason, now
        if target == Level.NORMAL:
            self._clear_since = None
            self.measured_swap_back_mb = 0.0  # three cool-downs with the primary and no pressure: measure afresh
        return self.state(changed=True)
