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

Everything here is lazy Polars; the caller collects once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import polars as pl

from engage_seq.common.times import format_instant, parse_duration, parse_instant
from engage_seq.data.schema import ROW_INDEX

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
SPLITS: tuple[str, ...] = ("train", "val", "test")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HorizonTask:
    """Propensity task: does the user do any of ``targets`` within ``horizon`` of the cutoff?

    Several targets make a multi-label task with one output per target.
    """

    targets: tuple[str, ...] = ("purchase",)
    horizon: str = "7d"
    name: str = "purchase_7d"

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets:
            raise ValueError(f"task {self.name!r}: list at least one target event type")
        parse_duration(self.horizon)

    @property
    def horizon_seconds(self) -> int:
        return parse_duration(self.horizon)

    @property
    def label_columns(self) -> tuple[str, ...]:
        return tuple(f"label_{t}" for t in self.targets)

    @property
    def label_window_seconds(self) -> int:
        """How far after a cutoff labels may look: splits are separated by at least this."""
        return self.horizon_seconds

    def label_exprs(self, cutoff: int) -> list[pl.Expr]:
        """One boolean per target from a user's history lists (see `user_histories`).

        ``n_history`` events lie before the cutoff; the label window is the next events up to
        ``cutoff + horizon``, found by counting, so no row is filtered or regrouped.
        """
        window_end = pl.col("ts").list.eval(pl.element() < cutoff + self.horizon_seconds).list.sum()
        window = pl.col("event_type").list.slice(
            pl.col("n_history"), window_end - pl.col("n_history")
        )
        return [
            window.list.contains(target).alias(column)
            for target, column in zip(self.targets, self.label_columns, strict=True)
        ]


@dataclass(frozen=True)
class NextEventTask:
    """Which event type comes next after the cutoff, and after how many hours.

    Only users whose next event falls within ``max_gap`` get a sample (the others are counted
    and dropped); ``max_gap`` also separates the splits, so no label crosses into the next one.
    """

    max_gap: str = "7d"
    name: str = "next_event"

    def __post_init__(self) -> None:
        parse_duration(self.max_gap)

    @property
    def targets(self) -> tuple[str, ...]:
        return ()

    @property
    def label_columns(self) -> tuple[str, ...]:
        return ("label_next_event", "label_next_hours")

    @property
    def label_window_seconds(self) -> int:
        return parse_duration(self.max_gap)

    def label_exprs(self, cutoff: int) -> list[pl.Expr]:
        """The event right after the history (index ``n_history``), if within ``max_gap``;
        null otherwise (such samples are counted and dropped)."""
        next_ts = pl.col("ts").list.get(pl.col("n_history"), null_on_oob=True)
        in_window = next_ts < cutoff + self.label_window_seconds
        next_type = pl.col("event_type").list.get(pl.col("n_history"), null_on_oob=True)
        hours = ((next_ts - cutoff) / 3600.0).cast(pl.Float32)
        return [
            pl.when(in_window).then(next_type).alias("label_next_event"),
            pl.when(in_window).then(hours).alias("label_next_hours"),
        ]


@dataclass(frozen=True)
class MultiTask:
    """Both heads on one encoder: horizon labels plus, where one exists, the next event.

    Unlike `NextEventTask` alone, samples without a next event within ``max_gap`` are kept
    (their next-event label is null and masked out of that head's loss), so the horizon
    head sees exactly the population it would see on its own.
    """

    horizon: HorizonTask = field(default_factory=HorizonTask)
    next_event: NextEventTask = field(default_factory=NextEventTask)
    name: str = "multitask"

    @property
    def targets(self) -> tuple[str, ...]:
        return self.horizon.targets

    @property
    def label_columns(self) -> tuple[str, ...]:
        return (*self.horizon.label_columns, *self.next_event.label_columns)

    @property
    def label_window_seconds(self) -> int:
        return max(self.horizon.label_window_seconds, self.next_event.label_window_seconds)

    def label_exprs(self, cutoff: int) -> list[pl.Expr]:
        return [*self.horizon.label_exprs(cutoff), *self.next_event.label_exprs(cutoff)]


Task = HorizonTask | NextEventTask | MultiTask


def horizon_part(task: Task) -> HorizonTask | None:
    """The horizon (propensity) part of a task, if it has one."""
    if isinstance(task, MultiTask):
        return task.horizon
    return task if isinstance(task, HorizonTask) else None


def next_event_part(task: Task) -> NextEventTask | None:
    """The next-event part of a task, if it has one."""
    if isinstance(task, MultiTask):
        return task.next_event
    return task if isinstance(task, NextEventTask) else None


@dataclass(frozen=True)
class SamplingConfig:
    """How cutoffs are placed and how much history each sample keeps.

    By default the test cutoff is the last midnight from which a full horizon is observed, the
    validation cutoff one horizon earlier, and ``n_train_cutoffs`` training cutoffs every
    ``cutoff_every`` ending one horizon before validation. Set ``test_cutoff`` (ISO date) to pin it.
    """

    max_len: int = 64
    n_train_cutoffs: int = 6
    cutoff_every: str = "7d"
    min_history_events: int = 1
    test_cutoff: str | None = None
    # Categorical values seen fewer times in the training period map to the unknown id.
    min_category_count: int = 1
    # Out of core: build in this many user-hash shards, one in memory at a time, and write one
    # sample file per shard. 1 = everything in memory (fastest when it fits).
    shards: int = 1
    # Rolling training cutoffs: every cutoff_every from train_start (replaces n_train_cutoffs).
    train_start: str | None = None
    # Explicit cutoffs (ISO dates) per split; each replaces the derived ones of its split.
    train_cutoffs: tuple[str, ...] | None = None
    val_cutoffs: tuple[str, ...] | None = None
    test_cutoffs: tuple[str, ...] | None = None
    # Eligibility: the user's last event must be at most this long before the cutoff.
    active_within: str | None = None
    # Disjoint users on top of the temporal split: this share of users (by key hash) is held
    # out of training and only they form val/test samples. 0 = off.
    holdout_user_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("train_cutoffs", "val_cutoffs", "test_cutoffs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.active_within is not None:
            parse_duration(self.active_within)
        if not 0.0 <= self.holdout_user_fraction < 1.0:
            raise ValueError(
                f"holdout_user_fraction must be in [0, 1), got {self.holdout_user_fraction}"
            )
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.n_train_cutoffs < 1:
            raise ValueError(f"n_train_cutoffs must be >= 1, got {self.n_train_cutoffs}")
        if self.shards < 1:
            raise ValueError(f"shards must be >= 1, got {self.shards}")
        if self.min_history_events < 1:
            raise ValueError(f"min_history_events must be >= 1, got {self.min_history_events}")
        parse_duration(self.cutoff_every)


@dataclass(frozen=True)
class CutoffPlan:
    """Cutoffs (epoch seconds) per split, with the temporal-split invariants checked."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    horizon_seconds: int

    def __post_init__(self) -> None:
        for split in SPLITS:
            if not getattr(self, split):
                raise ValueError(f"cutoff plan has no {split} cutoff")
        h = self.horizon_seconds
        if max(self.train) + h > min(self.val):
            raise ValueError(
                f"leakage: the last train label window ends {format_instant(max(self.train) + h)},"
                f" after the first validation cutoff {format_instant(min(self.val))}"
            )
        if max(self.val) + h > min(self.test):
            raise ValueError(
                "leakage: the last validation label window ends "
                f"{format_instant(max(self.val) + h)}, after the first test cutoff "
                f"{format_instant(min(self.test))}"
            )

    def items(self) -> list[tuple[str, int]]:
        return [(split, c) for split in SPLITS for c in sorted(getattr(self, split))]

    def to_dict(self) -> dict[str, list[str]]:
        return {
            split: [format_instant(c) for c in sorted(getattr(self, split))] for split in SPLITS
        }


def plan_cutoffs(
    data_start: int, data_end: int, task: Task, sampling: SamplingConfig
) -> CutoffPlan:
    """Place cutoffs so every label window is fully observed and splits never overlap.

    ``data_end`` is exclusive (last event time + 1 s). Explicit cutoffs in ``sampling`` win;
    otherwise test is the last midnight with a full label window after it, validation one
    window earlier, and training cutoffs every ``cutoff_every`` before that (from
    ``train_start`` when set, else ``n_train_cutoffs`` of them).
    """
    h = task.label_window_seconds
    if sampling.test_cutoffs:
        test = sorted(parse_instant(c) for c in sampling.test_cutoffs)
    elif sampling.test_cutoff is not None:
        test = [parse_instant(sampling.test_cutoff)]
    else:
        test = [(data_end - h) // 86_400 * 86_400]  # last midnight with a full window after it
    if max(test) + h > data_end:
        raise ValueError(
            f"test cutoff {format_instant(max(test))} + label window {h // 3600} h ends after "
            f"the data ({format_instant(data_end)}): its labels would be censored. Use an "
            "earlier test cutoff or a shorter horizon."
        )
    if sampling.val_cutoffs:
        val = sorted(parse_instant(c) for c in sampling.val_cutoffs)
    else:
        val = [min(test) - h]
    step = parse_duration(sampling.cutoff_every)
    last_train = min(val) - h
    if sampling.train_cutoffs:
        train = sorted(parse_instant(c) for c in sampling.train_cutoffs)
    elif sampling.train_start is not None:
        first = parse_instant(sampling.train_start)
        train = list(range(last_train, first - 1, -step))[::-1]
    else:
        train = [last_train - i * step for i in range(sampling.n_train_cutoffs)][::-1]
    kept = [c for c in train if c > data_start]
    if 0 < len(kept) < len(train):
        log.warning(
            "only %d of %d training cutoffs fall after the data start %s; using %d",
            len(kept), len(train), format_instant(data_start), len(kept),
        )  # fmt: skip
    if not kept or min(val) <= data_start:
        raise ValueError(
            f"data from {format_instant(data_start)} to {format_instant(data_end)} is too short "
            f"for a {h // 3600} h label window: train/val/test need three non-overlapping "
            "label windows after some history. Use a shorter horizon, other cutoffs or more data."
        )
    return CutoffPlan(train=tuple(kept), val=tuple(val), test=tuple(test), horizon_seconds=h)


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
    """All samples of all splits as one lazy plan (collect once), ordered by cutoff, user."""
    histories = user_histories(events)
    parts = [samples_at_cutoff(histories, task, c, split, max_len) for split, c in plan.items()]
    columns = [
        "split",
        "cutoff",
        "user_key",
        "n_history",
        "seconds_since_last",
        *sequence_columns(events),
        *task.label_columns,
    ]
    return pl.concat(parts).select(columns)  # plan.items() is in cutoff order


def categorical_columns(events: pl.LazyFrame) -> list[str]:
    """event_type, channel, then declared categorical attributes (``cat_*``)."""
    names = events.collect_schema().names()
    return ["event_type", "channel", *[c for c in names if c.startswith("cat_")]]


def numeric_columns(events: pl.LazyFrame) -> list[str]:
    return [c for c in events.collect_schema().names() if c.startswith("num_")]


def signed_log1p(x: pl.Expr) -> pl.Expr:
    """sign(x) * log1p(|x|): tames heavy tails (order values, dwell times) before scaling."""
    return x.sign() * x.abs().log1p()


def count_tokens(events: pl.LazyFrame, before: int) -> dict[str, dict[str, int]]:
    """Per categorical column, how often each value occurs before ``before`` (mergeable
    across user-hash shards by adding counts)."""
    train = events.filter(pl.col("ts") < before)
    counted = [
        train.group_by(pl.col(c).alias("value"))
        .len()
        .filter(pl.col("value").is_not_null())
        .select(pl.lit(c).alias("column"), "value", "len")
        for c in categorical_columns(events)
    ]
    found = pl.concat(counted).collect()
    out: dict[str, dict[str, int]] = {c: {} for c in categorical_columns(events)}
    for column, value, n in found.iter_rows():
        out[column][value] = n
    return out


def vocabulary_from_counts(
    counts: dict[str, dict[str, int]], min_count: int = 1
) -> dict[str, list[str]]:
    """Values seen at least ``min_count`` times, sorted (stable ids; 0 pad, 1 unknown)."""
    return {
        c: sorted(v for v, n in values.items() if n >= min_count) for c, values in counts.items()
    }


def fit_vocabulary(events: pl.LazyFrame, before: int, min_count: int = 1) -> dict[str, list[str]]:
    """Per categorical column, the values seen at least ``min_count`` times before ``before``
    (the end of the training period). Rarer values map to the unknown id."""
    return vocabulary_from_counts(count_tokens(events, before), min_count)


def numeric_moments(events: pl.LazyFrame, before: int) -> dict[str, dict[str, float]]:
    """n, sum and sum of squares of signed_log1p(x) per numeric attribute, training period
    only (mergeable across shards by adding)."""
    columns = numeric_columns(events)
    if not columns:
        return {}
    train = events.filter(pl.col("ts") < before)
    moments = train.select(
        *[signed_log1p(pl.col(c)).count().alias(f"{c}|n") for c in columns],
        *[signed_log1p(pl.col(c)).sum().alias(f"{c}|sum") for c in columns],
        *[(signed_log1p(pl.col(c)) ** 2).sum().alias(f"{c}|sumsq") for c in columns],
    ).collect()
    return {
        c: {k: float(moments[f"{c}|{k}"].item() or 0.0) for k in ("n", "sum", "sumsq")}
        for c in columns
    }


def scaling_from_moments(moments: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation; serving applies
    ``clip((signed_log1p(x) - mean) / std, -5, 5)``, null -> 0. A constant column gets std 1."""
    out = {}
    for c, m in moments.items():
        n = m["n"]
        mean = m["sum"] / n if n else 0.0
        var = (m["sumsq"] - n * mean * mean) / (n - 1) if n > 1 else 0.0
        out[c] = {"mean": mean, "std": math.sqrt(var) if var > 1e-12 else 1.0}
    return out
