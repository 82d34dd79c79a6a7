"""Histograms of one feature on both sides, on bins the reference defines.

Categorical values are counted per category and, past `MAX_CATEGORIES`, pooled into `OTHER`
(rare values can single a user out, and over many sparse bins PSI is mostly noise); numeric
values are counted on right-closed bins between the reference's quantiles (invariant to
monotone maps, so binning hours equals binning log hours), with nulls in a bin of their own.
Polars and numpy only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import polars as pl

from engage_seq.monitoring.distances import shares

QUANTILE_BINS = 10
MAX_CATEGORIES = 20  # categories listed (and binned) per feature; the rest pool into OTHER
MISSING = "missing"
OTHER = "(other)"


def pool_categories(
    bins: list[str], reference: list[int], current: list[int], keep: int = MAX_CATEGORIES
) -> tuple[list[str], list[int], list[int], int]:
    """Keep the ``keep`` categories with the largest share on either side (so a category new
    in the current data that matters keeps its bin), in their order, and sum the rest into
    `OTHER` (last). Returns the bins, both counts and how many categories were pooled."""
    if len(bins) <= keep:
        return bins, reference, current, 0
    ref, cur = shares(np.array(reference)), shares(np.array(current))
    order = np.argsort(-np.maximum(ref, cur), kind="stable")  # ties: reference order
    kept = np.sort(order[:keep])
    rest = np.sort(order[keep:])
    return (
        [bins[i] for i in kept] + [OTHER],
        [reference[i] for i in kept] + [int(sum(reference[i] for i in rest))],
        [current[i] for i in kept] + [int(sum(current[i] for i in rest))],
        len(rest),
    )


def categorical_counts(
    reference: pl.LazyFrame, current: pl.LazyFrame
) -> tuple[list[str], list[int], list[int]]:
    """Counts per category of the ``value`` column on both sides (nulls as `MISSING`); bins
    are the union of both sides' categories, most frequent in the reference first."""

    def counted(frame: pl.LazyFrame, name: str) -> pl.LazyFrame:
        value = pl.col("value").cast(pl.String).fill_null(MISSING)
        return frame.group_by(value.alias("bin")).agg(pl.len().cast(pl.Int64).alias(name))

    joined = (
        counted(reference, "reference")
        .join(counted(current, "current"), on="bin", how="full", coalesce=True)
        .with_columns(pl.col("reference", "current").fill_null(0))
        .sort(["reference", "current", "bin"], descending=[True, True, False])
        .collect()
    )
    return joined["bin"].to_list(), joined["reference"].to_list(), joined["current"].to_list()


def quantile_edges(reference: pl.LazyFrame, n_bins: int = QUANTILE_BINS) -> list[float]:
    """Distinct inner edges at the reference's 1/n .. (n-1)/n quantiles (nulls ignored)."""
    qs = [i / n_bins for i in range(1, n_bins)]
    row = (
        reference.select(
            pl.col("value").cast(pl.Float64).quantile(q).alias(f"q{i}") for i, q in enumerate(qs)
        )
        .collect()
        .row(0)
    )
    return sorted({float(v) for v in row if v is not None and math.isfinite(v)})


def binned_counts(
    reference: pl.LazyFrame,
    current: pl.LazyFrame,
    n_bins: int = QUANTILE_BINS,
    edge_text: Callable[[float], str] = lambda x: f"{x:.3g}",
) -> tuple[list[str], list[int], list[int]]:
    """Counts on right-closed bins between the reference's quantile edges, plus a `MISSING`
    bin for nulls (kept only when either side has one); ``edge_text`` writes the labels."""
    edges = quantile_edges(reference, n_bins)
    labels = _bin_labels([edge_text(e) for e in edges])
    index = (
        pl.when(pl.col("value").is_null())
        .then(pl.lit(len(edges) + 1, dtype=pl.UInt32))
        .otherwise(pl.lit(pl.Series(edges, dtype=pl.Float64)).search_sorted(pl.col("value")))
    )

    def counted(frame: pl.LazyFrame) -> np.ndarray:
        found = frame.select(index.alias("bin")).group_by("bin").len().collect()
        counts = np.zeros(len(edges) + 2, dtype=np.int64)
        counts[found["bin"].to_numpy()] = found["len"].to_numpy()
        return counts

    ref, cur = (
        counted(reference.cast({"value": pl.Float64})),
        counted(current.cast({"value": pl.Float64})),
    )
    if ref[-1] == 0 and cur[-1] == 0:
        ref, cur = ref[:-1], cur[:-1]
    else:
        labels = [*labels, MISSING]
    return labels, ref.tolist(), cur.tolist()


def _bin_labels(text: list[str]) -> list[str]:
    if not text:
        return ["all"]
    inner = [f"({a}, {b}]" for a, b in itertools.pairwise(text)]
    return [f"≤ {text[0]}", *inner, f"> {text[-1]}"]
