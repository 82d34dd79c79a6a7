"""Where a backtest looks: the artifact's task and eligibility rules, and the cutoffs from the
first (the run's last test cutoff, or one given) forward every ``every``, while the label
window ``[cutoff, cutoff + horizon)`` is fully inside the table. Polars only.
"""

from __future__ import annotations

from typing import Any

from engage_seq.common.times import parse_duration, parse_instant, parse_instant_arg
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.tasks import HorizonTask
from engage_seq.monitoring.errors import BacktestError

ELIGIBILITY_KEYS = ("min_history_events", "active_within", "holdout_user_fraction")


def horizon_task(metadata: dict[str, Any]) -> HorizonTask:
    """The artifact's horizon task (targets and horizon), as it was trained."""
    task = metadata.get("task") or {}
    targets = list(task.get("targets") or [])
    if not targets or not task.get("horizon"):
        raise BacktestError(
            "the artifact has no horizon target (task "
            f"{task.get('name')!r}); engage-backtest evaluates propensity models"
        )
    return HorizonTask(targets=tuple(targets), horizon=str(task["horizon"]), name=task["name"])


def eligibility(metadata: dict[str, Any]) -> SamplingConfig:
    """The run's eligibility settings (min history, activity window, held-out users), so the
    backtest scores the population the run's test split held."""
    recorded = ((metadata.get("config") or {}).get("data") or {}).get("sampling") or {}
    return SamplingConfig(
        **{k: recorded[k] for k in ELIGIBILITY_KEYS if recorded.get(k) is not None}
    )


def backtest_cutoffs(
    first: int, every: int, horizon: int, data_end: int, count: int | None = None
) -> list[int]:
    """``first``, ``first + every``, ... while ``cutoff + horizon <= data_end`` (exclusive end
    of the data), at most ``count`` of them."""
    last = data_end - horizon
    cutoffs = list(range(first, last + 1, every)) if first <= last else []
    return cutoffs[:count] if count is not None else cutoffs


def step_seconds(value: str, what: str) -> int:
    """A duration option ('7d') in seconds; a `BacktestError` naming ``what`` otherwise."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise BacktestError(f"{what}: {exc}") from None


def first_cutoff(start: str | None, metadata: dict[str, Any]) -> int:
    """``start`` (ISO text or epoch seconds) as epoch seconds; without it the last test cutoff
    the artifact records."""
    first = parse_instant_arg(start, "start", BacktestError)
    if first is not None:
        return first
    test = (metadata.get("cutoffs") or {}).get("test") or []
    if not test:
        raise BacktestError("the artifact records no test cutoff; pass start=<ISO date>")
    return max(parse_instant(c) for c in test)
