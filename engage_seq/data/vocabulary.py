"""What is fitted on the training period: categorical vocabularies and numeric scaling.

Both are computed from events before the end of the training period only, as mergeable
counts and moments, so user-hash shards add up to the statistics of the whole table.
"""

from __future__ import annotations

import math

import polars as pl


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
