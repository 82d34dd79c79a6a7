"""Segment fairness: does the model rank and calibrate as well for every platform, country,
channel or history length as it does overall?

Three steps, each usable alone:

* `engage_seq.evaluation.segments.segment_frame`: one segment value per sample (derived from
  the sample, or declared user attributes read leakage-safe from the raw event table).
* `segment_metrics`: per (segment, value) size, positive rate, mean score, ROC-AUC, ECE and
  calibration gap through `engage_seq.metrics.scores` (the numbers of ``metrics.json``), with flags.
* `assess_segments`: `segment_metrics` with its settings and the headline check, as a
  `SegmentAssessment`; the report section that shows it is
  `engage_seq.reporting.fairness_section` (tables, a plain-language list, one figure).

Flags are deliberately conservative, because a fairness report that cries wolf is ignored:
a value is judged only with ``min_size`` samples, and flagged only when its gap exceeds the
threshold *and* ``min_z`` standard errors (a 100-sample segment's ROC-AUC has a standard error
of ~0.05, as large as the default threshold).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch

from engage_seq.evaluation.segments import MISSING
from engage_seq.metrics.scores import score_probabilities

log = logging.getLogger(__name__)

OTHER = "(other)"  # values beyond ``max_values`` pooled, so a 200-country table stays readable
OVERALL = "(overall)"  # the reference row of `segment_metrics`
CALIBRATION_GAP_FRACTION = 0.2
OVERALL_TOLERANCE = 0.01  # caller's headline vs the scores' own overall: larger = wrong split?


def _check_scores(scores: pl.DataFrame, segment_columns: Sequence[str]) -> None:
    absent = [c for c in ("score", "label", *segment_columns) if c not in scores.columns]
    if absent:
        raise ValueError(
            f"scores lack column(s) {absent}; available: {scores.columns}. Expected 'score' "
            "(probability), 'label' (bool or 0/1) and one column per segment (segment_frame)."
        )
    if scores.height == 0:
        raise ValueError("scores is empty: no samples to judge segments on")
    score = pl.col("score").cast(pl.Float64)
    label = pl.col("label").cast(pl.Float64)
    bad = scores.select(
        (score.is_null() | ~score.is_between(0.0, 1.0) | score.is_nan()).sum().alias("score"),
        (label.is_null() | ~label.is_in([0.0, 1.0])).sum().alias("label"),
    ).row(0, named=True)
    if bad["score"]:
        raise ValueError(
            f"column 'score' has {bad['score']} value(s) that are null, NaN or outside [0, 1]; "
            "pass probabilities (apply the sigmoid to logits)"
        )
    if bad["label"]:
        raise ValueError(f"column 'label' has {bad['label']} value(s) that are null or not 0/1")


def _ordered_values(column: pl.Series, max_values: int) -> tuple[pl.Series, list[str]]:
    """Values as text (null -> ``(missing)``; beyond the ``max_values`` largest -> ``(other)``)
    and their display order: an Enum's own order (history buckets), else largest first."""
    text = column.cast(pl.String).fill_null(MISSING)
    counts = text.value_counts(name="n").filter(pl.col(text.name) != MISSING)
    if isinstance(column.dtype, pl.Enum):
        present = set(counts[text.name].to_list())
        order = [v for v in column.dtype.categories.to_list() if v in present]
    else:
        ranked = counts.sort(["n", text.name], descending=[True, False])[text.name].to_list()
        if len(ranked) > max_values:
            ranked = ranked[: max_values - 1]
            text = pl.select(
                pl.when(text.is_in([*ranked, MISSING])).then(text).otherwise(pl.lit(OTHER))
            ).to_series()
            ranked.append(OTHER)
        order = ranked
    if MISSING in set(text.to_list()):
        order.append(MISSING)
    return text, order


def binary_metrics(score: pl.Series, label: pl.Series) -> dict[str, float]:
    """ROC-AUC (NaN with one class) and ECE of one subset, through `score_probabilities`: the
    very code behind ``metrics.json``, so a segment's numbers compare with the headline."""
    probs = torch.from_numpy(score.cast(pl.Float64).to_numpy().copy()).reshape(-1, 1)
    labels = torch.from_numpy(label.cast(pl.Float64).to_numpy().copy()).reshape(-1, 1)
    out = score_probabilities(["target"], horizon_probs=probs, horizon_labels=labels)
    return {"auroc": out["auroc"], "ece": out["ece"]}


def _auroc_standard_error(auroc: pl.Expr, positives: pl.Expr, negatives: pl.Expr) -> pl.Expr:
    """Hanley & McNeil (1982): the sampling error of a ROC-AUC from its value and class sizes."""
    q1 = auroc / (2 - auroc)
    q2 = 2 * auroc**2 / (1 + auroc)
    var = (
        auroc * (1 - auroc) + (positives - 1) * (q1 - auroc**2) + (negatives - 1) * (q2 - auroc**2)
    ) / (positives * negatives)
    return var.clip(lower_bound=0).sqrt()


def calibration_threshold(
    positive_rate: float,
    max_calibration_gap: float | None = None,
    calibration_gap_fraction: float = CALIBRATION_GAP_FRACTION,
) -> float:
    """The calibration threshold `segment_metrics` uses for an overall positive rate."""
    if max_calibration_gap is not None:
        return max_calibration_gap
    return calibration_gap_fraction * min(positive_rate, 1 - positive_rate)


def segment_metrics(
    scores: pl.DataFrame,
    segment_columns: Sequence[str],
    *,
    min_size: int = 100,
    max_auroc_gap: float = 0.05,
    max_calibration_gap: float | None = None,
    calibration_gap_fraction: float = CALIBRATION_GAP_FRACTION,
    min_z: float = 2.0,
    max_values: int = 20,
) -> pl.DataFrame:
    """Per (segment, value): size, ranking and calibration, and whether it is flagged.

    ``scores``: ``score`` (probability), ``label`` (bool or 0/1) and the segment columns (one
    target; call once per target of a multi-label task). The first row (segment
    ``(overall)``) is the whole frame, the reference every gap is measured against.

    Columns: ``segment``, ``value``, ``n``, ``positives``, ``positive_rate``, ``mean_score``,
    ``auroc`` (NaN when the value has one class: undefined, never 0.5), ``ece`` (15-bin, as in
    ``metrics.json``), ``calibration_gap`` (mean score − positive rate, > 0 = over-predicts),
    ``auroc_diff`` and ``calibration_diff`` (value − overall), ``status`` (``flagged``,
    ``ok``, ``too small to judge``, ``reference``), ``flagged`` and ``reason``.

    A value with at least ``min_size`` samples is flagged when

    * its ROC-AUC is more than ``max_auroc_gap`` *below* the overall (one-sided: when one value
      is bad, the overall drops and the others sit above it; flagging those is noise), or
    * its calibration gap differs from the overall's by more than ``max_calibration_gap``
      (default ``calibration_gap_fraction`` × min(p, 1 − p) of the overall positive rate p:
      an absolute 0.02 means nothing for a 0.5 % purchase rate and little for 50 %);

    and, either way, the difference exceeds ``min_z`` standard errors (Hanley–McNeil for
    ROC-AUC, the residuals' for calibration), so sampling noise alone rarely flags. ECE is
    reported but not flagged: with 15 bins it grows as segments shrink, from noise alone.
    Values beyond the ``max_values`` largest of a column are pooled as ``(other)``.
    """
    _check_scores(scores, segment_columns)
    if max_values < 2:
        raise ValueError(f"max_values must be >= 2, got {max_values}")
    stats = _segment_stats(scores, segment_columns, max_values)
    ref = stats.row(0, named=True)
    cal_threshold = calibration_threshold(
        ref["positive_rate"], max_calibration_gap, calibration_gap_fraction
    )
    stats = _with_flags(stats, ref, min_size, max_auroc_gap, cal_threshold, min_z)
    stats = _with_reasons(stats, ref, min_size)
    log.info(
        "segment fairness: %d values, %d flagged (calibration threshold %.4f)",
        stats.height - 1,
        int(stats["flagged"].sum()),
        cal_threshold,
    )
    return stats.select(
        "segment", "value", "n", "positives", "positive_rate", "mean_score", "auroc", "ece",
        "calibration_gap", "auroc_diff", "calibration_diff", "status", "flagged", "reason",
    )  # fmt: skip


def _segment_stats(
    scores: pl.DataFrame, segment_columns: Sequence[str], max_values: int
) -> pl.DataFrame:
    """Size, positive rate, mean score, calibration gap and its standard error, ROC-AUC and
    ECE per (segment, value): the ``(overall)`` row first, then each column's values in
    display order."""
    base = scores.select(
        pl.col("score").cast(pl.Float64), pl.col("label").cast(pl.Float64)
    ).with_columns((pl.col("label") - pl.col("score")).alias("residual"))
    parts = [base.with_columns(pl.lit(OVERALL).alias("segment"), pl.lit("(all)").alias("value"))]
    orders: dict[str, list[str]] = {OVERALL: ["(all)"]}
    for column in segment_columns:
        values, orders[column] = _ordered_values(scores[column], max_values)
        parts.append(base.with_columns(pl.lit(column).alias("segment"), values.alias("value")))
    rows = pl.concat(parts)

    stats = rows.group_by("segment", "value").agg(
        pl.len().alias("n"),
        pl.col("label").sum().cast(pl.Int64).alias("positives"),
        pl.col("label").mean().alias("positive_rate"),
        pl.col("score").mean().alias("mean_score"),
        (pl.col("score").mean() - pl.col("label").mean()).alias("calibration_gap"),
        (pl.col("residual").std() / pl.len().sqrt()).fill_null(math.nan).alias("calibration_se"),
    )
    # the metric code runs once per segment value (a few dozen), never per sample
    ranking = [
        {"segment": segment, "value": value, **binary_metrics(part["score"], part["label"])}
        for (segment, value), part in rows.group_by("segment", "value")
    ]
    stats = stats.join(pl.DataFrame(ranking), on=["segment", "value"])
    order = pl.DataFrame(
        [(s, v) for s, vs in orders.items() for v in vs], schema=["segment", "value"], orient="row"
    ).with_row_index("_order")
    return stats.join(order, on=["segment", "value"]).sort("_order").drop("_order")


def _with_flags(
    stats: pl.DataFrame,
    ref: Mapping[str, Any],
    min_size: int,
    max_auroc_gap: float,
    cal_threshold: float,
    min_z: float,
) -> pl.DataFrame:
    """``stats`` with the differences from the overall row ``ref`` and the private flag
    columns ``_auroc_flag``, ``_cal_flag`` and ``_judged`` (see `segment_metrics`)."""
    auroc_se = _auroc_standard_error(
        pl.col("auroc"), pl.col("positives"), pl.col("n") - pl.col("positives")
    )
    reference = pl.col("segment") == OVERALL
    judged = ~reference & (pl.col("n") >= min_size)
    auroc_shortfall = ref["auroc"] - pl.col("auroc")
    cal_diff = pl.col("calibration_gap") - ref["calibration_gap"]
    auroc_flag = (
        judged
        & pl.col("auroc").is_not_nan()
        & (auroc_shortfall > max_auroc_gap)
        & (auroc_shortfall > min_z * auroc_se)
    )
    cal_flag = (
        judged
        & (cal_diff.abs() > cal_threshold)
        & ~(cal_diff.abs() <= min_z * pl.col("calibration_se"))  # NaN se (n = 1) never shields
    )
    return stats.with_columns(
        (pl.col("auroc") - ref["auroc"]).alias("auroc_diff"),
        cal_diff.alias("calibration_diff"),
        auroc_flag.alias("_auroc_flag"),
        cal_flag.alias("_cal_flag"),
        judged.alias("_judged"),
    )


def _with_reasons(stats: pl.DataFrame, ref: Mapping[str, Any], min_size: int) -> pl.DataFrame:
    """``stats`` (with `_with_flags`' columns) plus ``status``, ``flagged`` and ``reason`` in
    words."""
    overall_gap = ref["calibration_gap"]
    reasons, statuses = [], []
    for row in stats.iter_rows(named=True):  # one row per segment value
        why = []
        if row["_auroc_flag"]:
            why.append(f"ROC-AUC {row['auroc']:.3f} vs {ref['auroc']:.3f} overall")
        if row["_cal_flag"]:
            direction = "over" if row["calibration_diff"] > 0 else "under"
            why.append(
                f"{direction}-predicts: mean score {row['mean_score']:.3f} vs positive rate "
                f"{row['positive_rate']:.3f} (gap {row['calibration_gap']:+.3f} vs "
                f"{overall_gap:+.3f} overall)"
            )
        if row["segment"] == OVERALL:
            statuses.append("reference")
        elif not row["_judged"]:
            statuses.append("too small to judge")
            why.append(f"n = {row['n']} < min_size = {min_size}")
        else:
            statuses.append("flagged" if why else "ok")
        if math.isnan(row["auroc"]):
            only = "positives" if row["positives"] == row["n"] else "negatives"
            why.append(f"ROC-AUC undefined: only {only}")
        reasons.append("; ".join(why))
    return stats.with_columns(
        pl.Series("status", statuses, dtype=pl.String),
        (pl.col("_auroc_flag") | pl.col("_cal_flag")).alias("flagged"),
        pl.Series("reason", reasons, dtype=pl.String),
    )


def _settings(thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """`segment_metrics`' keyword defaults overridden by ``thresholds`` (one source of truth)."""
    params = inspect.signature(segment_metrics).parameters.values()
    defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(thresholds) - set(defaults))
    if unknown:
        raise TypeError(f"unknown fairness threshold(s) {unknown}; valid: {sorted(defaults)}")
    return {**defaults, **thresholds}


def _mismatches(reference: Mapping[str, Any], overall: Mapping[str, float]) -> list[str]:
    """Where the caller's headline metrics disagree with the scores' own overall: usually the
    metrics of another split, which would make every gap in the section meaningless."""
    pairs = {"auroc": "auroc", "positive_rate": "positive_rate", "mean_prediction": "mean_score"}
    out = []
    for given_key, own_key in pairs.items():
        given, own = overall.get(given_key), reference[own_key]
        if given is None or not math.isfinite(given) or not math.isfinite(own):
            continue
        if abs(given - own) > OVERALL_TOLERANCE:
            out.append(f"{given_key} {given:.3f} given, {own:.3f} in these scores")
    return out


@dataclass
class SegmentAssessment:
    """What `assess_segments` found for one target: everything the report section shows.

    ``metrics`` is `segment_metrics`' frame (the ``(overall)`` reference row first);
    ``settings`` its keyword arguments as used; ``calibration_threshold`` the calibration gap
    that flags, for the overall positive rate; ``headline_mismatch`` where the caller's
    headline metrics disagree with these scores (empty when they agree).
    """

    metrics: pl.DataFrame
    settings: dict[str, Any]
    calibration_threshold: float
    headline_mismatch: list[str]

    @property
    def reference(self) -> dict[str, Any]:
        """The ``(overall)`` row."""
        return self.metrics.row(0, named=True)

    @property
    def segments(self) -> pl.DataFrame:
        """Every segment value, without the reference row."""
        return self.metrics.filter(pl.col("status") != "reference")

    @property
    def flagged(self) -> pl.DataFrame:
        return self.segments.filter(pl.col("flagged"))

    @property
    def too_small(self) -> int:
        """Segment values with fewer than ``min_size`` samples (listed, not judged)."""
        return int((self.segments["status"] == "too small to judge").sum())


def assess_segments(
    scores: pl.DataFrame,
    segment_columns: Sequence[str],
    overall: Mapping[str, float],
    **thresholds: Any,
) -> SegmentAssessment:
    """`segment_metrics` of ``scores`` by ``segment_columns`` (its keyword arguments are
    ``thresholds``; unknown ones raise `TypeError`), checked against ``overall``: the split's
    headline metrics under their plain names (``auroc``, ``positive_rate``,
    ``mean_prediction``, as `engage_seq.metrics.scores` names them). Gaps are measured
    against the scores' own overall; a headline that differs from it by more than
    `OVERALL_TOLERANCE` is recorded (it is usually another split's)."""
    if not segment_columns:
        raise ValueError("no segment columns: pass at least one (e.g. history_length)")
    settings = _settings(thresholds)
    metrics = segment_metrics(scores, segment_columns, **settings)
    reference = metrics.row(0, named=True)
    threshold = calibration_threshold(
        reference["positive_rate"],
        settings["max_calibration_gap"],
        settings["calibration_gap_fraction"],
    )
    return SegmentAssessment(metrics, settings, threshold, _mismatches(reference, overall))
