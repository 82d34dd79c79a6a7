"""`AggregateFeatures`: the recency / frequency / monetary aggregates the horizon baselines
fit on."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from engage_seq.baselines.frames import Frame, as_lazy

# log1p(hours) standing in for "never seen in the kept history": ~100 years, larger than any
# real gap, and paired with a 0/1 indicator so a linear model need not rely on its value.
NEVER_LOG_HOURS = math.log1p(100 * 365 * 24)
WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)


class AggregateFeatures:
    """RFM aggregates per sample, as vectorised Polars list expressions.

    The aggregates see exactly the inputs of the sequence models: the list columns hold the
    most recent ``max_len`` events before the cutoff, so counts, windows, shares and
    "hours since the last X" are over that kept history (a type seen only before truncation
    counts as never seen); ``n_history`` and ``seconds_since_last`` cover the full history.

    Features, in order (`names`):

    * ``log_hours_since_last``  log1p(seconds_since_last / 3600) (recency)
    * ``log1p_n_history``  log1p(events before the cutoff, full history)
    * ``events_{1,7,30}d``  kept events with ``cutoff - ts <= window``
    * ``active_days``  distinct UTC days with a kept event
    * ``<num_col>_sum``, ``<num_col>_mean``  per numeric attribute, nulls and NaN ignored
      (sum 0 and mean 0 when no value is present)
    * ``count_event=<t>``, ``count_channel=<c>``  per event type / channel seen in training
    * ``log_hours_since=<t>``  log1p(hours since the last kept event of type t), or
      `NEVER_LOG_HOURS` when there is none, with ``never=<t>`` = 1 in that case
    * ``share=<t>``  count of t / kept events

    Types and channels unseen in training are ignored at transform time (they still count in
    the totals). Only the ``max_categories`` most frequent training values of each are kept,
    so a long-tailed taxonomy cannot blow up the feature count.
    """

    def __init__(self, max_categories: int = 100) -> None:
        if max_categories < 1:
            raise ValueError(f"max_categories must be >= 1, got {max_categories}")
        self.max_categories = max_categories
        self.event_types: list[str] = []
        self.channels: list[str] = []
        self.numeric_columns: list[str] = []
        self.fitted = False

    def fit(self, train: Frame) -> AggregateFeatures:
        """Learn the event types, channels (most frequent first, stored sorted) and the
        ``num_*`` columns of the training samples."""
        lazy = as_lazy(train)
        self.numeric_columns = sorted(c for c in lazy.collect_schema().names() if c[:4] == "num_")
        self.event_types = self._top_values(lazy, "event_type")
        self.channels = self._top_values(lazy, "channel")
        self.fitted = True
        return self

    def _top_values(self, lazy: pl.LazyFrame, column: str) -> list[str]:
        counts = (
            lazy.select(pl.col(column).explode().alias("value"))
            .drop_nulls()
            .group_by("value")
            .len()
            .sort(["len", "value"], descending=[True, False])
            .head(self.max_categories)
            .collect()
        )
        return sorted(counts["value"].to_list())

    @property
    def names(self) -> list[str]:
        return [
            "log_hours_since_last",
            "log1p_n_history",
            *[f"events_{d}d" for d in WINDOWS_DAYS],
            "active_days",
            *[f"{c}_{stat}" for c in self.numeric_columns for stat in ("sum", "mean")],
            *[f"count_event={t}" for t in self.event_types],
            *[f"count_channel={c}" for c in self.channels],
            *[f"log_hours_since={t}" for t in self.event_types],
            *[f"never={t}" for t in self.event_types],
            *[f"share={t}" for t in self.event_types],
        ]

    def expressions(self) -> list[pl.Expr]:
        """One Float64 expression per feature, in `names` order."""
        age = pl.col("cutoff") - pl.col("ts")  # list[i64] seconds before the cutoff, all > 0
        kept = pl.col("event_type").list.len()
        exprs = [
            (pl.col("seconds_since_last") / 3600.0).log1p(),
            pl.col("n_history").cast(pl.Float64).log1p(),
            *[
                age.list.eval((pl.element() <= d * 86_400).cast(pl.Int64)).list.sum()
                for d in WINDOWS_DAYS
            ],
            pl.col("ts").list.eval(pl.element().floordiv(86_400)).list.n_unique(),
        ]
        for c in self.numeric_columns:
            values = pl.col(c).cast(pl.List(pl.Float64)).list.eval(pl.element().fill_nan(None))
            exprs += [values.list.sum(), values.list.mean().fill_null(0.0)]
        counts = [pl.col("event_type").list.count_matches(t) for t in self.event_types]
        exprs += counts
        exprs += [pl.col("channel").list.count_matches(c) for c in self.channels]
        last_ts = [
            pl.col("ts").list.get(
                pl.col("event_type").list.eval(pl.element().eq(t).arg_true().last()).list.first(),
                null_on_oob=True,
            )
            for t in self.event_types
        ]
        exprs += [
            ((pl.col("cutoff") - ts) / 3600.0).log1p().fill_null(NEVER_LOG_HOURS) for ts in last_ts
        ]
        exprs += [ts.is_null() for ts in last_ts]
        exprs += [(n / kept).fill_nan(0.0).fill_null(0.0) for n in counts]
        return [e.cast(pl.Float64).alias(f"f{i}") for i, e in enumerate(exprs)]

    def transform(self, samples: Frame) -> np.ndarray:
        """(N, F) float32 features, rows in sample order."""
        if not self.fitted:
            raise RuntimeError("AggregateFeatures.transform called before fit")
        lazy = as_lazy(samples)
        missing = [c for c in self.numeric_columns if c not in lazy.collect_schema().names()]
        if missing:
            raise ValueError(f"samples lack the numeric columns seen in training: {missing}")
        out = lazy.select(self.expressions()).collect()
        return out.to_numpy().astype(np.float32, copy=False).reshape(out.height, -1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_categories": self.max_categories,
            "event_types": list(self.event_types),
            "channels": list(self.channels),
            "numeric_columns": list(self.numeric_columns),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AggregateFeatures:
        out = cls(int(d["max_categories"]))
        out.event_types = list(d["event_types"])
        out.channels = list(d["channels"])
        out.numeric_columns = list(d["numeric_columns"])
        out.fitted = True
        return out
