"""Operational time of the customer-base generator: clock seconds <-> Λ(t) = ∫ s·g, in days.

The customer base's purchases follow a Poisson process of intensity λ_i · s(t) · g(t), s the
day-of-week multiplier and g the time-of-day profile (both mean 1). In operational time
Λ(t) that process is a plain Poisson process of rate λ_i, which is what makes the simulation
vectorisable (exponential gaps in Λ, then one inversion) and the oracle closed-form (the
BG/NBD formulas hold with t_x, T and the horizon measured in Λ). Because s and g are
piecewise constant (per day, per hour), Λ is piecewise linear and both directions are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SECONDS_PER_DAY = 86_400
# Monday..Sunday purchase multipliers (normalised to mean 1 below): busier Friday-Saturday.
DAY_OF_WEEK = (0.85, 0.85, 0.9, 0.95, 1.1, 1.3, 1.05)
# UTC hours 0..23 (normalised to mean 1 below): quiet nights, a lunch and an evening peak.
# It moves purchases within a day and leaves daily counts (and so the oracle's windows of
# whole days) alone.
TIME_OF_DAY = (
    0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.1, 1.2,
    1.4, 1.3, 1.1, 1.0, 1.0, 1.1, 1.3, 1.6, 1.8, 1.7, 1.2, 0.6,
)  # fmt: skip


def _normalised(weights: tuple[float, ...]) -> np.ndarray:
    values = np.asarray(weights, dtype=np.float64)
    return values / values.mean()


@dataclass(frozen=True)
class WeeklyClock:
    """Λ for a simulation that starts at a midnight UTC falling on ``first_weekday``.

    Times are seconds since that midnight (float arrays); operational times are in days, so a
    week of clock time is exactly 7 operational days.
    """

    first_weekday: int  # 0 = Monday
    _day: np.ndarray = field(init=False, repr=False, compare=False)  # (7,) s by day offset
    _week_cum: np.ndarray = field(init=False, repr=False, compare=False)  # (8,) Λ at day k
    _hour: np.ndarray = field(init=False, repr=False, compare=False)  # (24,) g
    _hour_cum: np.ndarray = field(init=False, repr=False, compare=False)  # (25,) ∫ g, hours

    def __post_init__(self) -> None:
        day = np.roll(_normalised(DAY_OF_WEEK), -self.first_weekday)  # index: days since start
        hour = _normalised(TIME_OF_DAY)
        object.__setattr__(self, "_day", day)
        object.__setattr__(self, "_week_cum", np.concatenate([[0.0], np.cumsum(day)]))
        object.__setattr__(self, "_hour", hour)
        object.__setattr__(self, "_hour_cum", np.concatenate([[0.0], np.cumsum(hour)]))

    def multiplier(self, seconds: np.ndarray) -> np.ndarray:
        """s · g at these times (the intensity multiplier; mean 1 over a week)."""
        seconds = np.asarray(seconds, dtype=np.float64)
        day = np.floor_divide(seconds, SECONDS_PER_DAY).astype(np.int64)
        hour = np.floor((seconds - day * SECONDS_PER_DAY) / 3600).astype(np.int64)
        return self._day[day % 7] * self._hour[np.clip(hour, 0, 23)]

    def operational(self, seconds: np.ndarray | float) -> np.ndarray:
        """Λ(t) in days for t seconds since the start (any float array)."""
        seconds = np.asarray(seconds, dtype=np.float64)
        day = np.floor_divide(seconds, SECONDS_PER_DAY)
        hours = (seconds - day * SECONDS_PER_DAY) / 3600  # [0, 24)
        hour = np.clip(np.floor(hours).astype(np.int64), 0, 23)
        within_day = (self._hour_cum[hour] + self._hour[hour] * (hours - hour)) / 24  # ∫ g, [0,1)
        weekday = (day % 7).astype(np.int64)
        whole_days = 7 * np.floor_divide(day, 7) + self._week_cum[weekday]
        return whole_days + self._day[weekday] * within_day

    def seconds(self, operational: np.ndarray) -> np.ndarray:
        """The inverse of `operational`: seconds since the start at which Λ reaches these."""
        operational = np.asarray(operational, dtype=np.float64)
        weeks = np.floor_divide(operational, 7)
        in_week = operational - 7 * weeks
        weekday = np.clip(np.searchsorted(self._week_cum, in_week, side="right") - 1, 0, 6)
        in_day = (in_week - self._week_cum[weekday]) / self._day[weekday] * 24  # ∫ g, hours
        hour = np.clip(np.searchsorted(self._hour_cum, in_day, side="right") - 1, 0, 23)
        hours = hour + (in_day - self._hour_cum[hour]) / self._hour[hour]
        return (7 * weeks + weekday) * SECONDS_PER_DAY + hours * 3600
