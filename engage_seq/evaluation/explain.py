"""Per-event explanations of a trained `EngagementModel`, in probability units, as frames.

The attributions come from `engage_seq.evaluation.attribution` (integrated gradients over the
event embeddings: why IG, why the mean-event baseline, why adaptive quadrature are told
there). This module turns them into one row per (sample, event) (`explain_samples`), the
event type × recency driver table (`driver_table`), the per-sample completeness check
(`per_sample`), and `explain_split`: the explanations behind a run report's "what drives
the scores" section (`SplitExplanation`; the section itself is
`engage_seq.reporting.explain_section`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from engage_seq.data.encoding import EncodedSamples, Vocabulary
from engage_seq.evaluation.attribution import TOLERANCE, attribute, mean_event_embedding
from engage_seq.models.engagement import EngagementModel

log = logging.getLogger(__name__)

RECENCY_BREAKS_HOURS: tuple[float, ...] = (24.0, 72.0, 168.0, 720.0)
RECENCY_LABELS: tuple[str, ...] = ("<1 d", "1-3 d", "3-7 d", "7-30 d", ">30 d")
RECENCY = pl.Enum(list(RECENCY_LABELS))
UNKNOWN_TOKEN = "<unknown>"  # a token the vocabulary does not know: what the model saw


def _known(column: str, vocabulary: Vocabulary) -> pl.Expr:
    """A token as the model saw it: tokens outside the fitted vocabulary become unknown."""
    known = pl.col(column).is_in(list(vocabulary.tokens[column]))
    return pl.when(known).then(pl.col(column)).otherwise(pl.lit(UNKNOWN_TOKEN)).alias(column)


@dataclass
class _RowAttributions:
    """`attribute` results of N samples gathered back into their given order, on the CPU."""

    attributions: np.ndarray  # (N, T) float32, T = the longest of the N sequences
    scores: np.ndarray  # (N,) float32
    baseline_scores: np.ndarray  # (N,) float32
    intervals: np.ndarray  # (N,) int32


def _attribute_rows(
    model: EngagementModel,
    encoded: EncodedSamples,
    rows: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    target: int,
    steps: int,
    baseline: torch.Tensor,
    tolerance: float | None,
) -> _RowAttributions:
    """`attribute` over ``rows`` (N,) of ``encoded`` (their ``lengths`` (N,)) in batches."""
    width = int(lengths.max()) if rows.size else 0
    out = _RowAttributions(
        np.zeros((rows.size, width), dtype=np.float32),
        np.zeros(rows.size, dtype=np.float32),
        np.zeros(rows.size, dtype=np.float32),
        np.zeros(rows.size, dtype=np.int32),
    )
    # length-sorted batches: the recurrent encoders run over padding, so less of it is faster
    order = np.argsort(lengths, kind="stable")
    for start in range(0, rows.size, batch_size):
        chunk = order[start : start + batch_size]
        result = attribute(model, encoded.batch(rows[chunk]), target, steps, baseline, tolerance)
        found = result.attributions.cpu().numpy()
        out.attributions[chunk, : found.shape[1]] = found
        out.scores[chunk] = result.scores.cpu().numpy()
        out.baseline_scores[chunk] = result.baseline_scores.cpu().numpy()
        out.intervals[chunk] = result.intervals.cpu().numpy()
    return out


def explain_samples(
    model: EngagementModel,
    encoded: EncodedSamples,
    samples: pl.DataFrame,
    vocabulary: Vocabulary,
    rows: np.ndarray | list[int],
    *,
    target: int = 0,
    steps: int = 32,
    batch_size: int = 256,
    baseline: torch.Tensor | None = None,
    tolerance: float | None = TOLERANCE,
) -> pl.DataFrame:
    """IG attributions of ``rows`` of one split, one output row per (sample, event).

    ``samples`` is the split's sample frame, row-aligned with ``encoded`` (it supplies the
    event types, channels, ``ts`` and ``cutoff``). Columns: ``row`` (the sample's row in the
    split), ``position`` (0 = oldest kept event), ``event_type``, ``channel``,
    ``hours_before_cutoff``, ``attribution`` (probability units), ``score``,
    ``baseline_score`` and ``ig_intervals`` (path pieces integrated, 1 = no bisection needed;
    per sample, repeated on its events). No user key. ``baseline`` None =
    `mean_event_embedding` of all of ``encoded``; ``tolerance`` as in `integrated_gradients`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if samples.height != len(encoded):
        raise ValueError(f"samples ({samples.height} rows) and encoded ({len(encoded)}) differ")
    lengths = encoded.lengths[rows]
    listed = samples["event_type"].list.len().to_numpy()[rows]
    if not np.array_equal(listed, lengths):
        raise ValueError("samples and encoded are not row-aligned: sequence lengths differ")
    if baseline is None:
        baseline = mean_event_embedding(model, encoded)
    found = _attribute_rows(
        model, encoded, rows, lengths, batch_size, target, steps, baseline, tolerance
    )
    return _event_rows(samples, vocabulary, rows, lengths, found)


def _event_rows(
    samples: pl.DataFrame,
    vocabulary: Vocabulary,
    rows: np.ndarray,
    lengths: np.ndarray,
    found: _RowAttributions,
) -> pl.DataFrame:
    """The long format of `explain_samples`: ``rows``' events exploded in position order."""
    width = found.attributions.shape[1]
    real = np.arange(width)[None, :] < lengths[:, None]  # row-major = explode order
    per_event = ["event_type", "channel", "ts"]
    return (
        samples.select(*per_event, "cutoff")[rows]
        .with_columns(
            row=pl.Series(rows),
            score=pl.Series(found.scores.astype(np.float64)),
            baseline_score=pl.Series(found.baseline_scores.astype(np.float64)),
            ig_intervals=pl.Series(found.intervals),
            position=pl.int_ranges(0, pl.col("ts").list.len(), dtype=pl.Int32),
        )
        .explode([*per_event, "position"])
        .with_columns(
            _known("event_type", vocabulary),
            _known("channel", vocabulary),
            ((pl.col("cutoff") - pl.col("ts")) / 3600.0).alias("hours_before_cutoff"),
            attribution=pl.Series(found.attributions[real].astype(np.float64)),
        )
        .select(
            "row",
            "position",
            "event_type",
            "channel",
            "hours_before_cutoff",
            "attribution",
            "score",
            "baseline_score",
            "ig_intervals",
        )
    )


def recency_bucket(hours: pl.Expr) -> pl.Expr:
    """Hours before the cutoff -> one of `RECENCY_LABELS` (left-closed, ordered Enum)."""
    bucket = pl.lit(RECENCY_LABELS[-1])
    for bound, label in reversed(list(zip(RECENCY_BREAKS_HOURS, RECENCY_LABELS, strict=False))):
        bucket = pl.when(hours < bound).then(pl.lit(label)).otherwise(bucket)
    return bucket.cast(RECENCY)


def driver_table(attributions: pl.DataFrame) -> pl.DataFrame:
    """Event type × recency bucket: ``count`` (events), ``mean_attribution``,
    ``mean_abs_attribution``, ``share_positive``, ``total_attribution``; sorted by mean
    attribution, so the top rows push scores up most per event and the bottom ones down.

    The mean per event says what one such event is worth; the total (mean × count) says how
    much of all scores a cell explains: a rare strong driver and a common weak one differ.
    """
    return (
        attributions.group_by(
            "event_type", recency_bucket(pl.col("hours_before_cutoff")).alias("recency")
        )
        .agg(
            pl.len().alias("count"),
            pl.col("attribution").mean().alias("mean_attribution"),
            pl.col("attribution").abs().mean().alias("mean_abs_attribution"),
            (pl.col("attribution") > 0).mean().alias("share_positive"),
            pl.col("attribution").sum().alias("total_attribution"),
        )
        .sort(["mean_attribution", "event_type", "recency"], descending=[True, False, False])
    )


def per_sample(attributions: pl.DataFrame) -> pl.DataFrame:
    """One row per explained sample: score, baseline score, the attributions' sum and the
    completeness gap ``score - baseline_score - sum`` (the quadrature error)."""
    return (
        attributions.group_by("row", maintain_order=True)
        .agg(
            pl.col("score").first(),
            pl.col("baseline_score").first(),
            pl.col("ig_intervals").first(),
            pl.col("attribution").sum().alias("attribution_sum"),
            pl.len().alias("n_events"),
        )
        .with_columns(
            (pl.col("score") - pl.col("baseline_score") - pl.col("attribution_sum")).alias(
                "completeness_gap"
            )
        )
    )


def completeness_errors(
    model: EngagementModel,
    encoded: EncodedSamples,
    rows: np.ndarray,
    steps: tuple[int, ...] = (4, 8, 16, 32),
    *,
    target: int = 0,
    baseline: torch.Tensor | None = None,
    tolerance: float | None = None,
) -> dict[int, float]:
    """Steps -> the largest |score - baseline_score - Σ attributions| over ``rows``, for
    choosing ``steps``; ``tolerance`` None measures the plain one-pass quadrature."""
    if baseline is None:
        baseline = mean_event_embedding(model, encoded)
    batch = encoded.batch(np.asarray(rows))
    errors = {}
    for n in steps:
        result = attribute(model, batch, target, n, baseline, tolerance)
        gap = result.scores - result.baseline_scores - result.attributions.sum(1)
        errors[n] = float(gap.abs().max())
    return errors


@dataclass
class SplitExplanation:
    """What `explain_split` found: the frames and numbers behind the report section.

    ``subset`` and ``top`` are row indices of the split (the random sample and the
    highest-scored users, best first); ``drivers`` is `driver_table` over the random subset
    only; ``checks`` is `per_sample` over every explained sample (subset ∪ top);
    ``top_events`` holds the top users' events with ``rank`` (1 = highest score) instead of
    ``row``, sorted by rank and position.
    """

    subset: np.ndarray  # (n_explain,) int64, sorted
    top: np.ndarray  # (n_top_users,) int64, by descending score
    drivers: pl.DataFrame
    checks: pl.DataFrame
    top_events: pl.DataFrame
    mean_baseline_score: float  # over the random subset
    n_refined: int  # explained samples whose path needed bisection
    score_mismatch_max: float  # |IG score - given probability|, max over explained samples

    @property
    def completeness_gaps(self) -> pl.Series:
        """|score - baseline - Σ attributions| per explained sample."""
        return self.checks["completeness_gap"].abs()


def _explained_rows(
    probabilities: np.ndarray, n: int, n_explain: int, n_top_users: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(seeded random subset, sorted; top rows by ``probabilities``, best first)."""
    if probabilities.size != n:
        raise ValueError(f"{probabilities.size} probabilities for {n} samples")
    if n == 0 or n_explain < 1 or n_top_users < 1:
        raise ValueError(
            f"nothing to explain: {n} samples, n_explain={n_explain}, n_top_users={n_top_users}"
        )
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(n, size=min(n_explain, n), replace=False))
    top = np.argsort(-probabilities, kind="stable")[: min(n_top_users, n)]
    return subset, top


def explain_split(
    model: EngagementModel,
    encoded: EncodedSamples,
    samples: pl.DataFrame,
    vocabulary: Vocabulary,
    probabilities: np.ndarray,
    *,
    target_index: int = 0,
    n_explain: int = 2000,
    n_top_users: int = 5,
    seed: int = 0,
    steps: int = 8,
) -> SplitExplanation:
    """Explain a seeded random subset of ``n_explain`` samples of one split (the aggregate
    view: a random subset, so the driver table describes the population, not the top of it)
    and the ``n_top_users`` highest-scored samples by ``probabilities`` (N,) (the per-user
    view), for probability ``target_index``; all against the split's mean event embedding.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    subset, top = _explained_rows(probabilities, len(encoded), n_explain, n_top_users, seed)
    rows = np.union1d(subset, top)
    baseline = mean_event_embedding(model, encoded)
    explained = explain_samples(
        model, encoded, samples, vocabulary, rows, target=target_index, steps=steps,
        baseline=baseline,
    )  # fmt: skip
    drivers = driver_table(explained.filter(pl.col("row").is_in(subset.tolist())))
    checks = per_sample(explained)
    refined = int((checks["ig_intervals"] > 1).sum())
    mismatch = float(
        np.abs(checks["score"].to_numpy() - probabilities[checks["row"].to_numpy()]).max()
    )
    if mismatch > 0.01:
        log.warning(
            "explanations: IG scores differ from the given probabilities by up to %.3f; are "
            "encoded, samples and probabilities row-aligned?",
            mismatch,
        )
    rank_of = {int(row): rank + 1 for rank, row in enumerate(top)}
    top_events = (
        explained.filter(pl.col("row").is_in(list(rank_of)))
        .with_columns(pl.col("row").replace_strict(rank_of, return_dtype=pl.Int32).alias("rank"))
        .sort("rank", "position")
        .drop("row")
    )
    base = float(checks.filter(pl.col("row").is_in(subset.tolist()))["baseline_score"].mean())
    return SplitExplanation(subset, top, drivers, checks, top_events, base, refined, mismatch)
