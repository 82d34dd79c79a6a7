"""Canonical events -> one sample per (user, cutoff), leakage-safe by construction.

A sample holds the user's last ``max_len`` events with ``ts < cutoff`` as list columns, oldest
first, and labels computed only from events in ``[cutoff, cutoff + horizon)``. An event exactly
at the cutoff is therefore a label event, never a feature.

Per-event time features (all float32):

* ``log_gap_h``  log1p(hours since the user's previous event); 0 for the user's first event.
  Gaps span seconds to months, so log hours keep them in a small range. The gap is computed on
  the full history *before* truncation, so a truncated window still knows its first gap.
* ``log_age_h``  log1p(hours from the event to the cutoff): recency, which drives intent decay.
* ``log_type_gap_h``  log1p(hours since the user's previous event *of the same type*), -1 for
  the first of its type. Rhythms live between events of one type (the gap between two
  purchases is a replenishment period, between two e-mail opens a send cadence), and the
  previous one of a type is often far outside the ``max_len`` window; computed before
  truncation like ``log_gap_h``.
* ``hour_sin/cos``, ``dow_sin/cos``  UTC hour of day and day of week on the unit circle.

Everything here is lazy Polars; the caller collects once. Tasks (the labels) live in `tasks`,
cutoffs in `sampling`, the training-period vocabulary and scaling in `vocabulary`.
"""

from __future__ import annotations

import math

import polars as pl

from engage_seq.data.aggregates import COLUMN_PREFIX, aggregate_names, with_aggregates
from engage_seq.data.sampling import CutoffPlan
from engage_seq.data.schema import ROW_INDEX
from engage_seq.data.tasks import Task

TIME_FEATURES: tuple[str, ...] = (
    "log_gap_h",
    "log_age_h",
    "log_type_gap_h",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
)
# How each feature is computed, for anyone rebuilding inputs outside engage_seq (exported in
# the artifact metadata). ts is int64 epoch seconds UTC; cutoff likewise.
FEATURE_DEFINITIONS: dict[str, str] = {
    "log_gap_h": "log1p((ts - previous_ts) / 3600); previous_ts is the user's previous event "
    "in the full history before truncation (0 for the user's first event)",
    "log_age_h": "log1p((cutoff - ts) / 3600)",
    "log_type_gap_h": "log1p((ts - previous_same_type_ts) / 3600); previous_same_type_ts is the "
    "user's previous event of the same event_type in the full history before truncation (-1 "
    "when there is none)",
    "hour_sin": "sin(2*pi*h/24), h = (ts mod 86400) / 3600 (fractional UTC hour)",
    "hour_cos": "cos(2*pi*h/24)",
    "dow_sin": "sin(2*pi*d/7), d = (floor(ts / 86400) + 3) mod 7 (UTC weekday, Monday = 0)",
    "dow_cos": "cos(2*pi*d/7)",
    "order": "oldest first, most recent max_len events with ts < cutoff, right-padded; events "
    "at the same second keep their input order",
}
SEQUENCE_COLUMNS: tuple[str, ...] = ("event_type", "channel", "ts", *TIME_FEATURES)


def clean_events(events: pl.LazyFrame) -> pl.LazyFrame:
    """Drop rows with a null key field and sort into the canonical order.

    Events at the same second keep their input order (``_row``, added here if absent): many
    logs have one-second resolution and the order within a second carries meaning.
    """
    if ROW_INDEX not in events.collect_schema().names():
        events = events.with_row_index(ROW_INDEX)
    return events.drop_nulls(["user_key", "ts", "event_type"]).sort(["user_key", "ts", ROW_INDEX])


def sequence_columns(events: pl.LazyFrame) -> list[str]:
    """The per-event list columns of a sample: fixed ones plus declared attributes."""
    attributes = [c for c in events.collect_schema().names() if c.startswith(("cat_", "num_"))]
    return [*SEQUENCE_COLUMNS, *attributes]


def with_gap_feature(events: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``log_gap_h`` and ``log_type_gap_h``; needs `clean_events` order (both gaps are
    cutoff-independent, so they are computed once per event)."""
    gap_hours = pl.col("ts").diff().over("user_key").fill_null(0) / 3600.0
    type_gap_hours = pl.col("ts").diff().over("user_key", "event_type") / 3600.0
    return events.with_columns(
        gap_hours.log1p().cast(pl.Float32).alias("log_gap_h"),
        type_gap_hours.log1p().fill_null(-1.0).cast(pl.Float32).alias("log_type_gap_h"),
    )


def calendar_features() -> list[pl.Expr]:
    """UTC hour of day and weekday on the unit circle; ``ts`` is epoch seconds."""
    hour = (pl.col("ts") % 86_400) / 3600.0
    dow = ((pl.col("ts") // 86_400) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    tau = 2.0 * math.pi
    return [
        (hour * tau / 24).sin().cast(pl.Float32).alias("hour_sin"),
        (hour * tau / 24).cos().cast(pl.Float32).alias("hour_cos"),
        (dow * tau / 7).sin().cast(pl.Float32).alias("dow_sin"),
        (dow * tau / 7).cos().cast(pl.Float32).alias("dow_cos"),
    ]


def user_histories(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per user: every per-event column as a list, oldest first.

    Everything that does not depend on a cutoff (gap, calendar features) is computed here,
    once; each cutoff then only counts and slices these lists.
    """
    prepared = with_gap_feature(clean_events(events)).with_columns(calendar_features())
    columns = [c for c in sequence_columns(events) if c != "log_age_h"]
    # group_by keeps the row order inside each group, so lists stay in canonical order;
    # maintain_order keeps users in key order, so samples need no sort afterwards
    return prepared.group_by("user_key", maintain_order=True).agg(pl.col(c) for c in columns)


def samples_at_cutoff(
    histories: pl.LazyFrame, task: Task | None, cutoff: int, split: str, max_len: int
) -> pl.LazyFrame:
    """Samples for every user with at least one event before ``cutoff``.

    ``histories`` comes from `user_histories`. The history end is a count of events before the
    cutoff (lists are time-sorted); the features are the last ``max_len`` of them. ``task``
    None: no labels (scoring, where the future is unknown).
    """
    n_history = pl.col("ts").list.eval(pl.element() < cutoff).list.sum()
    start = (pl.col("n_history").cast(pl.Int64) - max_len).clip(lower_bound=0)  # no u32 wrap
    length = pl.col("n_history") - start
    per_event = [c for c in histories.collect_schema().names() if c != "user_key"]
    age_hours = (cutoff - pl.element()) / 3600.0
    return (
        histories.with_columns(n_history.cast(pl.UInt32).alias("n_history"))
        .filter(pl.col("n_history") > 0)
        .with_columns(
            (cutoff - pl.col("ts").list.get(pl.col("n_history") - 1)).alias("seconds_since_last"),
            *(task.label_exprs(cutoff) if task is not None else []),
        )
        .with_columns(pl.col(c).list.slice(start, length) for c in per_event)
        .with_columns(
            pl.col("ts").list.eval(age_hours.log1p().cast(pl.Float32)).alias("log_age_h"),
            pl.lit(split).alias("split"),
            pl.lit(cutoff, dtype=pl.Int64).alias("cutoff"),
        )
    )


def build_samples(events: pl.LazyFrame, task: Task, plan: CutoffPlan, max_len: int) -> pl.LazyFrame:
    """All samples of all splits as one lazy plan (collect once), ordered by cutoff, user;
    each with the user's full-history aggregates (`engage_seq.data.aggregates`)."""
    histories = user_histories(events)
    clean = clean_events(events)
    numeric = [c for c in events.collect_schema().names() if c.startswith("num_")]
    parts = [
        with_aggregates(
            samples_at_cutoff(histories, task, c, split, max_len), clean, c, task.targets, numeric
        )
        for split, c in plan.items()
    ]
    columns = [
        "split",
        "cutoff",
        "user_key",
        "n_history",
        "seconds_since_last",
        *sequence_columns(events),
        *task.label_columns,
        *(COLUMN_PREFIX + name for name in aggregate_names(task.targets, numeric)),
    ]
    return pl.concat(parts).select(columns)  # plan.items() is in cutoff order
