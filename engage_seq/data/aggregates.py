"""Each user's full-history aggregates at a cutoff: the RFM features, for the hybrid model.

A sample's sequence holds only its last ``max_len`` events; what a buy-till-you-die or RFM
model reads (how recently, how often over weeks to a year, since when, how much) lives in the
whole history. These aggregates are computed over **every** event before the cutoff (never only
the kept window), one float per name, in the fixed order of `aggregate_names`:

* ``recency_h``  log1p(hours from the user's last event to the cutoff);
* ``tenure_h``  log1p(hours from the user's first event to the cutoff);
* ``count_<w>``  log1p(events in the last ``w`` before the cutoff), w in `WINDOW_DAYS`, then
  ``count_all`` (the whole history);
* per target event type ``t`` (the task's targets, in task order): ``recency_h/<t>``
  (-1 when the user never had one), ``count_<w>/<t>``, ``count_all/<t>`` and ``first_h/<t>``
  (log1p hours since the first one, -1 when never): with the recency and the count, the
  buy-till-you-die summary (x, t_x, T) of that type (`engage_seq.models.btyd_features`);
* per numeric attribute ``c`` (in ``numeric_attributes`` order): ``sum/<c>`` and ``mean/<c>``,
  signed_log1p of the sum and of the mean of its non-missing values (0 when all are missing).

An event exactly at the cutoff is a label event, never counted. The same definitions run in
Polars here (training samples, ``engage-score``) and in TorchScript in the artifact's
``predict_events`` (`engage_seq.serving.aggregates_scripted`); export checks that both agree.
The model sees them standardised with the training samples' mean and standard deviation
(`fit_aggregate_scaling`), clipped to ±5, like the numeric attributes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from engage_seq.data.vocabulary import signed_log1p

WINDOW_DAYS: tuple[int, ...] = (7, 30, 90, 365)
COLUMN_PREFIX = "agg_"  # sample columns: agg_<name>
NEVER = -1.0  # recency of a target type the user never had (log1p hours are >= 0)
CLIP = 5.0  # standardised aggregates are clipped to ±CLIP, as numeric attributes are
AGGREGATE_DEFINITIONS: dict[str, str] = {
    "recency_h": "log1p((cutoff - last ts) / 3600) over all events with ts < cutoff",
    "tenure_h": "log1p((cutoff - first ts) / 3600)",
    "count_<w>": "log1p(number of events with cutoff - w days <= ts < cutoff); count_all: all",
    "recency_h/<t>": "the same for events of target type t; -1 when there is none",
    "count_<w>/<t>": "the same counts for events of target type t",
    "first_h/<t>": "log1p((cutoff - first ts of type t) / 3600); -1 when there is none",
    "sum/<c>": "signed_log1p(sum of the non-missing values of numeric c); 0 when none",
    "mean/<c>": "signed_log1p(mean of the non-missing values of numeric c); 0 when none",
    "scaling": "clip((value - mean) / std, -5, 5) with training-sample statistics, in the "
    "order of aggregate_names",
}


def _window_names(suffix: str) -> list[str]:
    return [*(f"count_{days}d{suffix}" for days in WINDOW_DAYS), f"count_all{suffix}"]


def aggregate_names(targets: Sequence[str], numeric: Sequence[str]) -> list[str]:
    """The aggregates of a task with these target types and numeric attributes, in order."""
    names = ["recency_h", "tenure_h", *_window_names("")]
    for target in targets:
        names += [f"recency_h/{target}", *_window_names(f"/{target}"), f"first_h/{target}"]
    for column in numeric:
        names += [f"sum/{column}", f"mean/{column}"]
    return names


def _hours_to(cutoff: int, ts: pl.Expr) -> pl.Expr:
    return ((cutoff - ts).cast(pl.Float64) / 3600.0).log1p()


def _counts(cutoff: int, selected: pl.Expr, suffix: str) -> list[pl.Expr]:
    """log1p(count) of ``selected`` events in each window, then over the whole history."""
    counts = [(selected & (pl.col("ts") >= cutoff - days * 86_400)).sum() for days in WINDOW_DAYS]
    counts.append(selected.sum())
    return [
        count.cast(pl.Float64).log1p().alias(name)
        for count, name in zip(counts, _window_names(suffix), strict=True)
    ]


def aggregate_exprs(cutoff: int, targets: Sequence[str], numeric: Sequence[str]) -> list[pl.Expr]:
    """Per-user aggregation expressions (for a group_by over events with ts < cutoff), named
    as `aggregate_names` and in its order."""
    everything = pl.col("ts").is_not_null()  # every event (a literal would count once)
    exprs = [
        _hours_to(cutoff, pl.col("ts").max()).alias("recency_h"),
        _hours_to(cutoff, pl.col("ts").min()).alias("tenure_h"),
        *_counts(cutoff, everything, ""),
    ]
    for target in targets:
        is_target = pl.col("event_type") == target
        last = pl.col("ts").filter(is_target).max()
        exprs.append(_hours_to(cutoff, last).fill_null(NEVER).alias(f"recency_h/{target}"))
        exprs += _counts(cutoff, is_target, f"/{target}")
        first = pl.col("ts").filter(is_target).min()
        exprs.append(_hours_to(cutoff, first).fill_null(NEVER).alias(f"first_h/{target}"))
    for column in numeric:
        values = pl.col(column).cast(pl.Float64).fill_nan(None)  # NaN = missing, as in ingest
        exprs += [
            signed_log1p(values.sum()).alias(f"sum/{column}"),  # all missing: sum 0
            signed_log1p(values.mean()).fill_null(0.0).alias(f"mean/{column}"),
        ]
    return exprs


def aggregates_at_cutoff(
    events: pl.LazyFrame, cutoff: int, targets: Sequence[str], numeric: Sequence[str]
) -> pl.LazyFrame:
    """One row per user with an event before ``cutoff``: ``user_key`` and the ``agg_*``
    columns (float64), from the user's whole history before the cutoff."""
    exprs = aggregate_exprs(cutoff, targets, numeric)
    return (
        events.filter(pl.col("ts") < cutoff)
        .group_by("user_key")
        .agg(exprs)
        .select("user_key", pl.exclude("user_key").name.prefix(COLUMN_PREFIX))
    )


def with_aggregates(
    samples: pl.LazyFrame,
    events: pl.LazyFrame,
    cutoff: int,
    targets: Sequence[str],
    numeric: Sequence[str],
) -> pl.LazyFrame:
    """``samples`` at ``cutoff`` (one row per user) with the users' aggregates joined on, in
    the samples' row order."""
    found = aggregates_at_cutoff(events, cutoff, targets, numeric)
    return samples.join(found, on="user_key", how="left", maintain_order="left")


# --- standardisation ----------------------------------------------------------------------


def fit_aggregate_scaling(train: pl.DataFrame, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of each aggregate over the training samples, in the
    order of ``names`` (a constant aggregate gets std 1). Raises when the samples lack them
    (built by an older version: delete the cache entry)."""
    columns = [COLUMN_PREFIX + name for name in names]
    missing = [c for c in columns if c not in train.columns]
    if missing:
        raise ValueError(
            f"the training samples lack aggregate column(s) {missing[:3]}; they were built "
            "without aggregates: delete the sample cache entry and rebuild"
        )
    stats = train.select(
        *(pl.col(c).mean().alias(f"{c}|mean") for c in columns),
        *(pl.col(c).std().alias(f"{c}|std") for c in columns),
    ).row(0, named=True)
    out = {}
    for name, column in zip(names, columns, strict=True):
        mean = float(stats[f"{column}|mean"] or 0.0)
        std = float(stats[f"{column}|std"] or 0.0)
        out[name] = {"mean": mean, "std": std if std > 1e-6 else 1.0}
    return out


def ordered_aggregate_scaling(scaling: Any, names: Any) -> dict[str, dict[str, float]]:
    """Aggregate scaling read from a checkpoint, artifact or manifest (untrusted input): a list
    of unique names and, for each, a finite mean and a positive finite std; in ``names`` order
    (JSON sorts keys, so the order comes from the list)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("aggregate_names must be a list of strings; re-export the artifact")
    if not isinstance(scaling, Mapping) or sorted(scaling) != sorted(names):
        raise ValueError(
            "aggregate_scaling does not list exactly the aggregate_names; the metadata is "
            "inconsistent: re-export the artifact (or retrain)"
        )
    if len(set(names)) != len(names):
        raise ValueError("aggregate_names repeats a name; re-export the artifact")
    out = {}
    for name in names:
        stats = scaling[name]
        mean = stats.get("mean") if isinstance(stats, Mapping) else None
        std = stats.get("std") if isinstance(stats, Mapping) else None
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mean, std)):
            raise ValueError(f"aggregate_scaling[{name!r}] needs finite numbers mean and std")
        if std <= 0:
            raise ValueError(f"aggregate_scaling[{name!r}]: std must be positive, got {std}")
        out[name] = {"mean": float(mean), "std": float(std)}
    return out


def standardised_aggregates(
    samples: pl.DataFrame, scaling: Mapping[str, Mapping[str, float]]
) -> np.ndarray:
    """(N, A) float32 model input: ``clip((value - mean) / std, -5, 5)``, missing -> 0, in
    the order of ``scaling`` (which `ordered_aggregate_scaling` fixed)."""
    if not scaling:
        return np.zeros((samples.height, 0), dtype=np.float32)
    columns = [
        ((pl.col(COLUMN_PREFIX + name) - stats["mean"]) / stats["std"])
        .clip(-CLIP, CLIP)
        .fill_null(0.0)
        .fill_nan(0.0)
        .cast(pl.Float32)
        for name, stats in scaling.items()
    ]
    return np.ascontiguousarray(samples.select(columns).to_numpy(), dtype=np.float32)


def aggregate_scaling_from_metadata(metadata: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A checkpoint's aggregate scaling, in the model's order ({} for a model without
    aggregates, or a checkpoint from before them)."""
    names = metadata.get("aggregate_names") or []
    if not names:
        return {}
    return ordered_aggregate_scaling(metadata.get("aggregate_scaling"), names)
