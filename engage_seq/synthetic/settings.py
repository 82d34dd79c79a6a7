"""What determines a synthetic table: the generator's settings, the simulated period and checks.

`SyntheticSettings` holds the fields; `SyntheticEventSource` (in `generator`) adds the
event-source interface (`scan`, `fingerprint`, `describe`). The split lets every part of the
simulation take the settings without importing the module that runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from engage_seq.common.times import format_instant as _iso
from engage_seq.common.times import parse_instant

_SECONDS_PER_DAY = 86_400
_SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class SyntheticSettings:
    """The fields of `SyntheticEventSource` (see there) and the period they simulate."""

    n_users: int = 25_000
    days: int = 120
    start: str = "2026-01-05"  # a Monday, UTC
    seed: int = 0
    organic_sessions_per_day: float = 0.05  # median user; log-normal across users
    emails_per_week: float = 2.0
    pushes_per_week: float = 1.0
    # Replenishment cycles (off by default): this share of users rebuys on a personal period,
    # log-uniform between the two bounds (days); see `engage_seq.synthetic.generator`.
    replenishment_share: float = 0.0
    replenishment_min_days: float = 7.0
    replenishment_max_days: float = 56.0
    # Drift (off by default): from this ISO date/time (UTC) on, behaviour changes by
    # `drift_strength` (see `engage_seq.synthetic.drift`); events before it are unchanged.
    drift_start: str | None = None
    drift_strength: float = 1.0
    # Segment columns `platform` (ios/android/web) and `country` on every event (off: the
    # table keeps its four columns); drawn from their own stream, they change nothing else.
    user_attributes: bool = False

    @property
    def start_epoch(self) -> int:
        """Start of the simulated period, epoch seconds UTC."""
        return int(_start_datetime(self).timestamp())

    @property
    def end_epoch(self) -> int:
        """End of the simulated period (no session starts at or after it), epoch seconds UTC."""
        return self.start_epoch + self.days * _SECONDS_PER_DAY

    @property
    def drift_epoch(self) -> int | None:
        """When drift starts, epoch seconds UTC (None: no drift)."""
        if self.drift_start is None:
            return None
        try:
            return parse_instant(str(self.drift_start))
        except ValueError:
            raise ValueError(
                f"drift_start must be an ISO date or date-time, got {self.drift_start!r}"
            ) from None


def _start_datetime(cfg: SyntheticSettings) -> datetime:
    # Not `parse_instant`: an offset written in `start` is replaced by UTC, not converted, and
    # the generated tables depend on it.
    return datetime.fromisoformat(cfg.start).replace(tzinfo=timezone.utc)


def _log_period_bounds(cfg: SyntheticSettings) -> tuple[float, float]:
    """Support of the log-uniform period prior, log(days)."""
    return math.log(cfg.replenishment_min_days), math.log(cfg.replenishment_max_days)


def _check_settings(cfg: SyntheticSettings) -> None:
    if cfg.n_users <= 0 or cfg.days <= 0:
        raise ValueError(
            f"SyntheticEventSource needs n_users > 0 and days > 0, got {cfg.n_users}, {cfg.days}"
        )
    if not 0.0 <= cfg.replenishment_share <= 1.0:
        raise ValueError(f"replenishment_share must be in [0, 1], got {cfg.replenishment_share}")
    if not 0.0 < cfg.replenishment_min_days < cfg.replenishment_max_days:
        raise ValueError(
            "replenishment periods need 0 < replenishment_min_days < replenishment_max_days, "
            f"got {cfg.replenishment_min_days} and {cfg.replenishment_max_days}"
        )
    drift = cfg.drift_epoch
    if drift is not None and not cfg.start_epoch <= drift < cfg.end_epoch:
        raise ValueError(
            f"drift_start {cfg.drift_start!r} lies outside the simulated period "
            f"[{_iso(cfg.start_epoch)}, {_iso(cfg.end_epoch)}); move it inside, or set it to "
            "None for no drift"
        )
    if not 0.0 < cfg.drift_strength <= 1.0:
        raise ValueError(f"drift_strength must be in (0, 1], got {cfg.drift_strength}")
