"""The leaderboard's numbers: configurations pooled over seeds (mean ± std) and ranked, and
the paired test of the winner against the runner-up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from engage_seq.common.stats import student_t_two_sided_p
from engage_seq.experiments.sweep_runs import (
    SEED_KEY,
    PairedComparison,
    Run,
    column_name,
    natural_sort_key,
)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of the finite values; NaN where undefined."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return math.nan, math.nan
    std = float(array.std(ddof=1)) if array.size > 1 else math.nan
    return float(array.mean()), std


def build_leaderboard(
    runs: Sequence[Run], swept: Sequence[str], metric: str, mode: str, seed_key: str = SEED_KEY
) -> pl.DataFrame:
    """One row per configuration (the swept keys other than ``seed_key``), best first.

    Columns: ``rank``, the swept keys (see `column_name`), ``n_runs``, ``n_nan`` (runs whose
    ranking metric is NaN, left out of the means), ``seeds``, and ``<metric>_mean`` /
    ``<metric>_std`` for every metric any run reports (std over runs, NaN for one run).
    Configurations without a finite ranking score rank last; ties keep sweep order.
    """
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(run.overrides[key] for key in swept), []).append(run)
    metric_names = sorted({name for run in runs for name in run.metrics})
    rows = []
    for config, members in groups.items():
        row: dict[str, Any] = {column_name(k): v for k, v in zip(swept, config, strict=True)}
        row["n_runs"] = len(members)
        row["n_nan"] = sum(not math.isfinite(run.metrics[metric]) for run in members)
        seeds = {run.overrides[seed_key] for run in members}
        row["seeds"] = ",".join(sorted(seeds, key=natural_sort_key))
        for name in metric_names:
            values = [run.metrics[name] for run in members if name in run.metrics]
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
        rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    ranked = (
        frame.with_columns(pl.col(f"{metric}_mean").fill_nan(None).alias("_score"))
        .sort("_score", descending=mode == "max", nulls_last=True, maintain_order=True)
        .drop("_score")
    )
    return ranked.with_row_index("rank", offset=1)


def paired_comparison(
    runs: Sequence[Run],
    best: dict[str, str],
    runner_up: dict[str, str],
    metric: str,
    mode: str,
    seed_key: str = SEED_KEY,
    alpha: float = 0.05,
) -> PairedComparison:
    """Does the best configuration beat the runner-up seed for seed, beyond seed noise?

    "Holds" needs both: a win on every shared seed and a two-sided paired t-test p <
    ``alpha``. With few seeds that is a high bar on purpose: 3 seeds need a lead about 4.3
    times its own standard error.
    """
    first = _mean_by_seed(runs, best, metric, seed_key)
    second = _mean_by_seed(runs, runner_up, metric, seed_key)
    shared = tuple(sorted(set(first) & set(second), key=natural_sort_key))
    sign = 1.0 if mode == "max" else -1.0
    finite = [d for d in (sign * (first[s] - second[s]) for s in shared) if math.isfinite(d)]
    n, n_nan = len(finite), len(shared) - len(finite)
    wins = sum(d > 0 for d in finite)
    mean = float(np.mean(finite)) if finite else math.nan
    nan_note = f"; {n_nan} shared seed(s) with a NaN score left out" if n_nan else ""
    if n < 2:
        verdict = (
            "not tested: the two configurations share no seed with finite scores"
            if n == 0
            else "not tested: only one shared seed (run more seeds to separate it from noise)"
        )
        return PairedComparison(
            shared, tuple(finite), n_nan, wins, mean, math.nan, verdict + nan_note, False
        )
    std = float(np.std(finite, ddof=1))
    if std == 0.0:  # identical differences: a sure difference, unless they are all zero
        p = 0.0 if mean != 0.0 else 1.0
    else:
        p = student_t_two_sided_p(mean / (std / math.sqrt(n)), n - 1)
    verdict, holds = _verdict(wins, n, mean, p, alpha)
    return PairedComparison(shared, tuple(finite), n_nan, wins, mean, p, verdict + nan_note, holds)


def _mean_by_seed(
    runs: Sequence[Run], config: dict[str, str], metric: str, seed_key: str
) -> dict[str, float]:
    """Seed -> mean ``metric`` of the runs of ``config`` with that seed."""
    values: dict[str, list[float]] = {}
    for run in runs:
        if all(run.overrides[k] == v for k, v in config.items()):
            values.setdefault(run.overrides[seed_key], []).append(run.metrics[metric])
    return {seed: float(np.mean(v)) for seed, v in values.items()}


def _verdict(wins: int, n: int, mean: float, p: float, alpha: float) -> tuple[str, bool]:
    """(the sentence, whether the lead holds) for ``wins`` of ``n`` shared seeds and p."""
    if wins == n and p < alpha:
        verdict, holds = f"holds: better on {n}/{n} shared seeds, paired t-test p = {p:.3g}", True
    elif wins == n:
        verdict, holds = (
            f"not significant: better on {n}/{n} shared seeds, but paired t-test p = {p:.3g} "
            f">= {alpha:g} (more seeds would settle it)",
            False,
        )
    else:
        favours = "" if mean > 0 else ", and on average the runner-up is ahead"
        verdict, holds = (
            f"does not hold: better on only {wins}/{n} shared seeds (paired t-test p = {p:.3g}"
            f"{favours})",
            False,
        )
    return verdict, holds
