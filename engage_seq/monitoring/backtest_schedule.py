"""Where a backtest looks: the artifact's task and eligibility rules, and the cutoffs from the
first (the run's last test cutoff, or one given) forward every ``every``, while the label
window ``[cutoff, cutoff + horizon)`` is fully inside the table. Polars only; each function
takes the one field of the artifact's metadata (`engage_seq.serving.contract`) it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engage_seq.common.times import parse_duration, parse_instant, parse_instant_arg
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.tasks import HorizonTask
from engage_seq.monitoring.errors import BacktestError

ELIGIBILITY_KEYS = ("min_history_events", "active_within", "holdout_user_fraction")


def horizon_task(task: Mapping[str, Any]) -> HorizonTask:
    """The artifact's horizon task (its metadata's ``task``: targets and horizon), as it was
    trained."""
    targets = list(task.get("targets") or [])
    if not targets or not task.get("horizon"):
        raise BacktestError(
            "the artifact has no horizon target (task "
            f"{task.get('name')!r}); engage-backtest evaluates propensity models"
        )
    return HorizonTask(targets=tuple(targets), horizon=str(task["horizon"]), name=task["name"])


def eligibility(recorded: Mapping[str, Any]) -> SamplingConfig:
    """The run's eligibility settings (min history, activity window, held-out users) from its
    recorded ``data.sampling`` configuration, so the backtest scores the population the run's
    test split held."""
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


def first_cutoff(start: str | None, test: Sequence[str]) -> int:
    """``start`` (ISO text or epoch seconds) as epoch seconds; without it the last of the test
    cutoffs the artifact records (``test``, ISO)."""
    first = parse_instant_arg(start, "start", BacktestError)
    if first is not None:
        return first
    if not test:
        raise BacktestError("the artifact records no test cutoff; pass start=<ISO date>")
    return max(parse_instant(c) for c in test)
