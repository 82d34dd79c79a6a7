"""Ranks, deciles and the top list of a scored table (Polars only).

Equal scores are ranked by id, so a top-k cut through a tie is the same on every run; the
top list leaves suppressed users out and reports how many tied users fell just below the cut.
"""

from __future__ import annotations

import math

import polars as pl

from engage_seq.serving.event_table import ScoringError


def parse_top(value: str | None, n_users: int) -> int | None:
    """``500`` -> 500 users; ``5%`` -> 5 % of the scored users (rounded up)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return math.ceil(n_users * share / 100)
        count = int(text)
        if count <= 0:
            raise ValueError
        return count
    except ValueError:
        raise ScoringError(
            f"--top must be a positive count or a percentage, got {value!r}"
        ) from None


def rank_columns(scores: pl.DataFrame, targets: list[str], id_column: str) -> pl.DataFrame:
    """rank_<t> (1 = most likely) and decile_<t> (1 = top 10 %) for every horizon target.
    Equal scores are ranked by id, so a top-k cut through a tie is the same on every run."""
    n = scores.height
    for target in targets:
        rank = pl.int_range(1, n + 1, dtype=pl.Int64)
        scores = scores.sort([f"score_{target}", id_column], descending=[True, False]).with_columns(
            rank.alias(f"rank_{target}"),
            ((rank - 1) * 10 // max(n, 1) + 1).cast(pl.Int8).alias(f"decile_{target}"),
        )
    return scores


def top_list(
    scores: pl.DataFrame, top_count: int | None, rank_target: str | None
) -> tuple[pl.DataFrame | None, int]:
    """(the first ``top_count`` unsuppressed users of ``scores``, already sorted by
    ``rank_target``; how many eligible users just below the cut share the last score)."""
    if top_count is None or rank_target is None:
        return None, 0
    eligible = scores.filter(~pl.col("suppressed"))
    top_frame = eligible.head(top_count)
    ties_at_cut = 0
    if 0 < top_frame.height < eligible.height:
        last = top_frame[f"score_{rank_target}"][-1]
        ties_at_cut = int((eligible[top_frame.height :][f"score_{rank_target}"] == last).sum())
    return top_frame, ties_at_cut
