"""When sessions happen: weekly and daily seasonality, and the clock replenishment cycles run on.

The generator draws session start times from these schedules; the oracle needs the same
schedules as distributions (the share of a kind's sessions expected in a window), so both
live here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engage_seq.synthetic.behaviour import _NEVER
from engage_seq.synthetic.settings import (
    _SECONDS_PER_DAY,
    _SECONDS_PER_HOUR,
    SyntheticSettings,
    _start_datetime,
)

# Relative session intensity per weekday (Monday first) and per hour of day (UTC).
_ORGANIC_WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.35, 1.25])
_ORGANIC_HOUR = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.0, 1.1,
     1.2, 1.1, 1.0, 1.0, 1.1, 1.3, 1.6, 1.9, 2.0, 1.7, 1.1, 0.5]
)  # fmt: skip
_EMAIL_WEEKDAY = np.array([0.8, 1.4, 1.0, 1.4, 0.9, 0.3, 0.2])
_EMAIL_HOUR = np.array(
    [0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.5, 1.5, 2.5, 2.5, 1.8, 1.2,
     1.0, 0.9, 0.8, 0.7, 0.7, 0.8, 0.9, 0.9, 0.7, 0.5, 0.2, 0.1]
)  # fmt: skip


def _sample_times(
    rng: np.random.Generator,
    n: int,
    days: int,
    weekday_weight: np.ndarray,
    hour_weight: np.ndarray,
    start_weekday: int,
) -> np.ndarray:
    """Seconds since the start for `n` sessions, drawn from weekday × hour seasonality."""
    day_weight = weekday_weight[(np.arange(days) + start_weekday) % 7]
    day = rng.choice(days, size=n, p=day_weight / day_weight.sum())
    hour = rng.choice(24, size=n, p=hour_weight / hour_weight.sum())
    return day * _SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, size=n)


@dataclass(frozen=True)
class _SeasonalClock:
    """A session kind's start-time distribution over the period: the generator picks a day and
    an hour by weight, then a second uniformly inside the hour; this holds that probability per
    hour cell."""

    cell_mass: np.ndarray  # (days * 24,), sums to 1

    @classmethod
    def of(
        cls, cfg: SyntheticSettings, weekday_weight: np.ndarray, hour_weight: np.ndarray
    ) -> _SeasonalClock:
        start_weekday = _start_datetime(cfg).weekday()
        day_weight = weekday_weight[(np.arange(cfg.days) + start_weekday) % 7]
        mass = np.outer(day_weight / day_weight.sum(), hour_weight / hour_weight.sum())
        return cls(mass.ravel())

    def fraction_before(self, seconds: np.ndarray | int) -> np.ndarray:
        """Share of the period's sessions of this kind expected to start before `seconds`."""
        cells = self.cell_mass.size
        seconds = np.clip(seconds, 0, cells * _SECONDS_PER_HOUR)
        cell, into = np.divmod(seconds, _SECONDS_PER_HOUR)
        before = np.concatenate([[0.0], np.cumsum(self.cell_mass)])
        partial = self.cell_mass[np.minimum(cell, cells - 1)] * (into / _SECONDS_PER_HOUR)
        return before[cell] + partial

    def fraction_between(self, begin: int, end: int) -> float:
        return float(self.fraction_before(end) - self.fraction_before(begin))

    def sample(self, rng: np.random.Generator, n: int, begin: int, end: int) -> np.ndarray:
        """`n` start times (whole seconds) from this distribution restricted to [begin, end)."""
        cells = np.arange(begin // _SECONDS_PER_HOUR, (end - 1) // _SECONDS_PER_HOUR + 1)
        lo = np.maximum(cells * _SECONDS_PER_HOUR, begin)
        hi = np.minimum((cells + 1) * _SECONDS_PER_HOUR, end)
        cumulative = np.cumsum(self.cell_mass[cells] * (hi - lo))
        pick = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
        pick = np.minimum(pick, cells.size - 1)
        return lo[pick] + rng.integers(0, hi[pick] - lo[pick])


@dataclass(frozen=True)
class _CycleClock:
    """The clock replenishment cycles run on: the organic seasonal clock scaled to days, i.e.
    the expected organic sessions so far of a user with one per day, in days.

    A cycle's due-date visits have intensity (visits per cycle-clock day) × (cycle-clock days
    per second), so in real time they keep the evening peak and the busier weekends of organic
    visits, while the number of visits a cycle gets, and every probability the oracle needs, is
    a closed form in cycle-clock time. On average the clock runs at one day per day."""

    organic: _SeasonalClock
    days: int
    before: np.ndarray  # organic share before each hour boundary, (days * 24 + 1,)

    @classmethod
    def of(cls, cfg: SyntheticSettings) -> _CycleClock:
        organic = _SeasonalClock.of(cfg, _ORGANIC_WEEKDAY, _ORGANIC_HOUR)
        return cls(organic, cfg.days, np.concatenate([[0.0], np.cumsum(organic.cell_mass)]))

    def days_at(self, seconds: np.ndarray | int) -> np.ndarray:
        """Cycle-clock days at `seconds` since the period start."""
        return self.days * self.organic.fraction_before(seconds)

    def log_elapsed(self, since: np.ndarray, now: np.ndarray | int) -> np.ndarray:
        """log(cycle-clock days from `since` to `now`); -inf where `since` is -1 (no purchase)."""
        elapsed = self.days_at(now) - self.days_at(np.maximum(since, 0))
        valid = (since >= 0) & (elapsed > 0)
        return np.log(elapsed, out=np.full(np.shape(elapsed), -np.inf), where=valid)

    def after(self, since: np.ndarray, elapsed_days: np.ndarray) -> np.ndarray:
        """The whole second at which `elapsed_days` of cycle-clock time have passed since
        `since` (at least one second later; `_NEVER` past the period's end)."""
        fraction = (self.days_at(since) + elapsed_days) / self.days
        inside = fraction < 1.0
        f = np.where(inside, fraction, 0.0)
        cell = np.clip(np.searchsorted(self.before, f, side="right") - 1, 0, self.before.size - 2)
        into = (f - self.before[cell]) / self.organic.cell_mass[cell]
        seconds = np.floor((cell + np.clip(into, 0.0, 1.0)) * _SECONDS_PER_HOUR).astype(np.int64)
        return np.where(inside, np.maximum(seconds, since + 1), _NEVER)


@dataclass(frozen=True)
class _Clocks:
    organic: _SeasonalClock
    marketing: _SeasonalClock  # e-mail and push sends share one schedule
    cycle: _CycleClock

    @classmethod
    def of(cls, cfg: SyntheticSettings) -> _Clocks:
        return cls(
            organic=_SeasonalClock.of(cfg, _ORGANIC_WEEKDAY, _ORGANIC_HOUR),
            marketing=_SeasonalClock.of(cfg, _EMAIL_WEEKDAY, _EMAIL_HOUR),
            cycle=_CycleClock.of(cfg),
        )
