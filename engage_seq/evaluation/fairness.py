"""Segment fairness: does the model rank and calibrate as well for every platform, country,
channel or history length as it does overall?

Three steps, each usable alone:

* `segment_frame`: one segment value per sample. *Derived* segments come from the sample
  itself (history-length bucket, channel of the last event before the cutoff); *declared*
  ones are user attributes in the raw event table, read through the run's own source, column
  mapping and ingest rules, so users get the keys they had in training. A declared value
  is the user's last non-null one strictly before the sample's cutoff (the leakage rule:
  a country first recorded at the cutoff is not what the model could have known).
* `segment_metrics`: per (segment, value) size, positive rate, mean score, ROC-AUC, ECE and
  calibration gap through `engage_seq.metrics.scores` (the numbers of ``metrics.json``), with flags.
* `fairness_section`: the report section (tables, a plain-language list, one figure).

Flags are deliberately conservative, because a fairness report that cries wolf is ignored:
a value is judged only with ``min_size`` samples, and flagged only when its gap exceeds the
threshold *and* ``min_z`` standard errors (a 100-sample segment's ROC-AUC has a standard error
of ~0.05, as large as the default threshold).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import polars as pl
import torch

from engage_seq.common.messages import describe_columns
from engage_seq.data.build import EventSource
from engage_seq.data.ingest import IngestConfig
from engage_seq.data.schema import ROW_INDEX, ColumnMapping, EventSchemaError, looks_like_identifier
from engage_seq.data.validation import validate_events
from engage_seq.metrics.scores import score_probabilities
from engage_seq.reporting.plotting import pyplot, save_png
from engage_seq.reporting.section import ReportSection, json_safe

log = logging.getLogger(__name__)

MISSING = "(missing)"  # no value before the cutoff: counted as its own segment value, not dropped
OTHER = "(other)"  # values beyond ``max_values`` pooled, so a 200-country table stays readable
OVERALL = "(overall)"  # the reference row of `segment_metrics`
DERIVED_SEGMENTS = ("history_length", "last_channel")
# columns the segment pipeline and the report add next to segment values: a declared segment
# column of one of these names would collide with them (a DuplicateError, or a silent overwrite)
RESERVED_SEGMENT_NAMES = (ROW_INDEX, "_sample", "user_key", "ts", "cutoff", "score", "label")
# Lower bounds of the history-length buckets: log-spaced because 1 event (cold start) and 64+
# (the default max_len: the model sees a truncated history) behave very differently.
HISTORY_BOUNDS = (1, 2, 5, 16, 64)
CALIBRATION_GAP_FRACTION = 0.2
OVERALL_TOLERANCE = 0.01  # caller's headline vs the scores' own overall: larger = wrong split?
FIGURE_NAME = "fairness.png"
# more distinct values than this and than half the users: an identifier, not a segment


# --- segment values per sample -----------------------------------------------------------


def history_labels(bounds: Sequence[int] = HISTORY_BOUNDS) -> list[str]:
    """Bucket names in order: (1, 2, 5, 16, 64) -> '1', '2-4', '5-15', '16-63', '64+'."""
    if not bounds or bounds[0] != 1 or any(lo >= hi for lo, hi in pairwise(bounds)):
        raise ValueError(f"history bounds must start at 1 and increase, got {list(bounds)}")
    labels = [str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in pairwise(bounds)]
    return [*labels, f"{bounds[-1]}+"]


def history_bucket(bounds: Sequence[int] = HISTORY_BOUNDS) -> pl.Expr:
    """``n_history`` (events before the cutoff, counted before truncation to ``max_len``) as an
    ordered Enum, so tables and plots list buckets by length, not alphabetically."""
    labels = history_labels(bounds)
    n_history = pl.col("n_history")
    bucket = pl.lit(labels[-1])
    for bound, label in reversed(list(zip(bounds[1:], labels[:-1], strict=True))):
        bucket = pl.when(n_history < bound).then(pl.lit(label)).otherwise(bucket)
    return bucket.cast(pl.Enum(labels))


def last_channel() -> pl.Expr:
    """Channel of the last event before the cutoff (sample lists end at the cutoff)."""
    return pl.col("channel").list.last().fill_null(MISSING)


def missing_column_message(missing: Sequence[str], schema: pl.Schema, where: str) -> str:
    """'segment column(s) [...] not in <where>; available columns: [...]. ...' (names only,
    and none when the header row looks like data: `messages.describe_columns`)."""
    return (
        f"segment column(s) {list(missing)} not in {where}; "
        f"{describe_columns(schema.names(), where, label='available columns')} "
        "Name user-level columns of the event table (e.g. country, platform)."
    )


def check_derived_segments(schema: pl.Schema, derived: Sequence[str], where: str) -> None:
    """Refuse a derived segment whose name is also a column of the raw table: the report
    would show the derived values under that name, and a reader would take them for the
    table's own column."""
    clash = [d for d in derived if d in schema]
    if clash:
        raise EventSchemaError(
            f"segment(s) {clash} in report.segments are derived from the samples, but {where} "
            "also has a column of that name: the report would show the derived values under "
            "the column's name. To segment by the column, give it another name in the table; "
            f"otherwise leave {clash} out of report.segments"
        )


def check_segment_columns(
    schema: pl.Schema, columns: Sequence[str], mapping: ColumnMapping, where: str
) -> None:
    """Raise `EventSchemaError` unless every declared segment column is in the raw table's
    ``schema``, is not the user id or timestamp, and holds one value per row. Needs only a
    schema, so `engage_seq.training.run` runs it before any work."""
    missing = [c for c in columns if c not in schema]
    if missing:
        raise EventSchemaError(missing_column_message(missing, schema, where))
    reserved = [c for c in columns if c in RESERVED_SEGMENT_NAMES]
    if reserved:
        raise EventSchemaError(
            f"segment column(s) {reserved} of {where} share a name with a column the fairness "
            f"report works with ({', '.join(RESERVED_SEGMENT_NAMES)}): give the column another "
            "name in the table, or leave it out of report.segments"
        )
    roles = {mapping.user_id: "user id", mapping.timestamp: "timestamp"}
    refused = [f"{c!r} ({roles[c]})" for c in columns if c in roles]
    if refused:
        raise EventSchemaError(
            f"segment column(s) {', '.join(refused)} cannot be segments: a user id would put raw "
            "ids into the report, a timestamp has one value per event. Name an attribute column."
        )
    nested = [f"{c!r} ({schema[c]})" for c in columns if schema[c].is_nested()]
    if nested:
        raise EventSchemaError(
            f"segment column(s) {', '.join(nested)} in {where} hold lists or structs; a segment "
            "needs one value per row (string, integer, boolean, category)"
        )


def _segment_events(
    raw: pl.LazyFrame,
    where: str,
    mapping: ColumnMapping,
    ingest: IngestConfig,
    columns: Sequence[str],
) -> pl.LazyFrame:
    """(user_key, ts, ``_row``, *columns as text) for every event the run's ingest keeps.

    Validation runs with the run's own mapping and rules, so keys (HMAC with the salt in the
    environment), dropped rows and duplicates are exactly training's; the raw segment values
    are joined back by input row (``_row``), which keeps their nulls (a declared categorical's
    ``cat_`` column has nulls filled, and undeclared columns do not survive ingest at all).
    """
    check_segment_columns(raw.collect_schema(), columns, mapping, where)
    validated = validate_events(raw, mapping, ingest, where)
    values = raw.select(  # not with_row_index: the table may have a column named like it
        pl.int_range(pl.len(), dtype=pl.UInt64).alias(ROW_INDEX),
        *(pl.col(c).cast(pl.String) for c in columns),
    )
    kept = validated.events.select(ROW_INDEX, "user_key", "ts")
    return kept.join(values, on=ROW_INDEX, how="left")


def _value_before_cutoff(keys: pl.LazyFrame, events: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """(``_sample``, column): the user's last non-null value with ``ts < cutoff``.

    Several values at the same second: the later input row wins, as in the feature order.
    """
    values = (
        events.filter(pl.col(column).is_not_null())
        .sort("user_key", "ts", ROW_INDEX)
        .group_by("user_key", "ts")
        .agg(pl.col(column).last())
        .sort("ts")
    )
    return keys.join_asof(
        values,
        left_on="cutoff",
        right_on="ts",
        by="user_key",
        strategy="backward",
        allow_exact_matches=False,  # a value recorded at the cutoff is a label-time value
        check_sortedness=False,  # both sides sorted above; polars cannot check with ``by``
    ).select("_sample", pl.col(column).fill_null(MISSING))


def segment_frame(
    samples: pl.DataFrame,
    *,
    source: EventSource | None = None,
    mapping: ColumnMapping | None = None,
    ingest: IngestConfig | None = None,
    columns: Sequence[str] = (),
    derived: Sequence[str] = DERIVED_SEGMENTS,
    history_bounds: Sequence[int] = HISTORY_BOUNDS,
    missing: dict[str, str] | None = None,
) -> pl.DataFrame:
    """One row per sample of ``samples`` (same order), one column per segment.

    ``derived``: any of `DERIVED_SEGMENTS` (``history_length``: an ordered Enum of buckets by
    ``history_bounds``; ``last_channel``). ``columns``: declared segments, columns of the raw
    table read with ``source``, ``mapping`` and ``ingest`` (the run's; defaults as in
    training). Values are text; a sample without a value before its cutoff gets
    ``(missing)``. A declared column with about one value per user is refused (an identifier).
    Reading declared columns costs one validation pass over the table, in memory, like an
    unsharded build. ``missing``: None (default) makes a declared column the table lacks an
    error; a dict instead receives each such column with the reason and the frame leaves it
    out, so a report loses that column only, not the whole section (the table may have
    changed since training checked it).
    """
    unknown = [d for d in derived if d not in DERIVED_SEGMENTS]
    if unknown:
        raise ValueError(f"unknown derived segment(s) {unknown}; choose from {DERIVED_SEGMENTS}")
    clash = sorted(set(derived) & set(columns)) or sorted(
        {c for c in columns if list(columns).count(c) > 1}
    )
    if clash:
        raise ValueError(f"segment name(s) {clash} given twice (derived and/or declared)")
    needed = {"history_length": "n_history", "last_channel": "channel"}
    needed_columns = [needed[d] for d in derived] + (["user_key", "cutoff"] if columns else [])
    absent = [c for c in needed_columns if c not in samples.columns]
    if absent:
        raise ValueError(
            f"samples lack column(s) {absent} needed for segments; available: {samples.columns}. "
            "Pass a split's sample frame as built by engage_seq.data.build."
        )
    exprs = {"history_length": history_bucket(history_bounds), "last_channel": last_channel()}
    out = samples.lazy().select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_sample"),
        *(exprs[d].alias(d) for d in derived),
    )
    if columns:
        if source is None:
            raise ValueError(
                f"declared segment column(s) {list(columns)} are read from the raw event table: "
                "pass the run's source (and its column mapping and ingest settings)"
            )
        raw, where = source.scan(), source.describe()
        check_derived_segments(raw.collect_schema(), derived, where)
        if missing is not None:
            schema = raw.collect_schema()
            absent = [c for c in columns if c not in schema]
            if absent:
                reason = missing_column_message(absent, schema, where)
                log.warning("segment fairness: skipped: %s", reason)
                missing.update(dict.fromkeys(absent, reason))
                columns = [c for c in columns if c not in absent]
    if columns:
        keys = samples.lazy().select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("_sample"), "user_key", "cutoff"
        )
        events = _segment_events(
            raw, where, mapping or ColumnMapping(), ingest or IngestConfig(), columns
        )
        events = events.join(keys.select("user_key").unique(), on="user_key", how="semi")
        events = events.collect().lazy()  # one validation, shared by every column below
        keys = keys.sort("cutoff")
        for column in columns:
            out = out.join(_value_before_cutoff(keys, events, column), on="_sample", how="left")
    frame = out.sort("_sample").drop("_sample").collect()
    if columns:
        _refuse_identifiers(frame, samples["user_key"], columns)
    return frame


def _refuse_identifiers(frame: pl.DataFrame, user_keys: pl.Series, columns: Sequence[str]) -> None:
    """A declared column with about one value per user (an email, a device id) would put
    identifiers into the report: refuse it rather than print its most frequent values."""
    users = user_keys.n_unique()
    counts = frame.select(pl.col(c).n_unique() for c in columns).row(0, named=True)
    suspicious = [c for c, n in counts.items() if looks_like_identifier(n, users)]
    if suspicious:
        raise EventSchemaError(
            f"segment column(s) {suspicious} have about one value per user "
            f"({[counts[c] for c in suspicious]} values for {users} users): they look like "
            "identifiers, which must not reach a report. Name a column with a few shared values."
        )


# --- metrics per segment value -----------------------------------------------------------


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
    stats = stats.join(order, on=["segment", "value"]).sort("_order").drop("_order")

    ref = stats.row(0, named=True)
    cal_threshold = calibration_threshold(
        ref["positive_rate"], max_calibration_gap, calibration_gap_fraction
    )
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
    stats = stats.with_columns(
        (pl.col("auroc") - ref["auroc"]).alias("auroc_diff"),
        cal_diff.alias("calibration_diff"),
        auroc_flag.alias("_auroc_flag"),
        cal_flag.alias("_cal_flag"),
        judged.alias("_judged"),
    )
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
    stats = stats.with_columns(
        pl.Series("status", statuses, dtype=pl.String),
        (pl.col("_auroc_flag") | pl.col("_cal_flag")).alias("flagged"),
        pl.Series("reason", reasons, dtype=pl.String),
    )
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


# --- the report section ------------------------------------------------------------------


def _settings(thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """`segment_metrics`' keyword defaults overridden by ``thresholds`` (one source of truth)."""
    params = inspect.signature(segment_metrics).parameters.values()
    defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(thresholds) - set(defaults))
    if unknown:
        raise TypeError(f"unknown fairness threshold(s) {unknown}; valid: {sorted(defaults)}")
    return {**defaults, **thresholds}


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _cell(text: str) -> str:
    """A value as a Markdown table cell: pipes escaped, one line."""
    return text.replace("|", "\\|").replace("\n", " ")


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


def _table(rows: pl.DataFrame) -> str:
    lines = [
        "| value | n | positive rate | mean score | ROC-AUC | ECE | flag |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows.iter_rows(named=True):
        auroc = _number(row["auroc"])
        if math.isnan(row["auroc"]):
            auroc = "n/a (one class)"
        flag = {"flagged": "**flagged**", "too small to judge": "too small"}.get(row["status"], "")
        lines.append(
            f"| {_cell(row['value'])} | {row['n']:,} | {_number(row['positive_rate'])} | "
            f"{_number(row['mean_score'])} | {auroc} | {_number(row['ece'])} | {flag} |"
        )
    return "\n".join(lines)


def fairness_section(
    scores: pl.DataFrame,
    segment_columns: Sequence[str],
    overall: Mapping[str, float],
    out_dir: Path,
    *,
    report_dir: Path | None = None,
    title: str = "Segment fairness",
    notes: Sequence[str] = (),
    **thresholds: Any,
) -> ReportSection:
    """The report section: a table per segment column, the flagged values in words, a figure.

    ``scores`` as for `segment_metrics` (whose keyword arguments ``thresholds`` are).
    ``overall``: the split's headline metrics under their plain names (``auroc``,
    ``positive_rate``, ``mean_prediction``, as `engage_seq.metrics.scores` names them); gaps are
    measured against the scores' own overall, and a headline that differs from it by more
    than 0.01 is reported as a warning (it is usually another split's). The figure is written
    to ``out_dir/fairness.png`` and linked relative to ``report_dir`` (default ``out_dir``).
    ``notes``: caveats shown first and kept in the summary (e.g. a segment column skipped).
    """
    if not segment_columns:
        raise ValueError("no segment columns: pass at least one (e.g. history_length)")
    settings = _settings(thresholds)
    metrics = segment_metrics(scores, segment_columns, **settings)
    reference = metrics.row(0, named=True)
    segments = metrics.filter(pl.col("status") != "reference")
    flagged = segments.filter(pl.col("flagged"))
    too_small = int((segments["status"] == "too small to judge").sum())
    cal_threshold = calibration_threshold(
        reference["positive_rate"],
        settings["max_calibration_gap"],
        settings["calibration_gap_fraction"],
    )
    out_dir = Path(out_dir)
    figure = out_dir / FIGURE_NAME
    write_fairness_figure(metrics, settings["max_auroc_gap"], figure)
    link = (
        Path(os.path.relpath(figure, report_dir)) if report_dir is not None else Path(FIGURE_NAME)
    )

    text = [
        f"Every value of each segment column against the whole split (n = {reference['n']:,}: "
        f"ROC-AUC {_number(reference['auroc'])}, positive rate "
        f"{_number(reference['positive_rate'])}, mean score {_number(reference['mean_score'])}, "
        f"ECE {_number(reference['ece'])}). A value with at least {settings['min_size']} samples "
        f"is flagged when its ROC-AUC is more than {settings['max_auroc_gap']:g} below the "
        "overall, or its calibration gap (mean score − positive rate) differs from the "
        f"overall's ({reference['calibration_gap']:+.3f}) by more than {cal_threshold:.3f}, and "
        f"in either case by more than {settings['min_z']:g} standard errors. Smaller values are "
        "listed but not judged. The overall ROC-AUC also ranks users *across* segments, so it "
        "can exceed every segment's when positive rates differ between them.",
        "",
    ]
    text += [line for note in notes for line in (f"**Note:** {note}", "")]
    mismatch = _mismatches(reference, overall)
    if mismatch:
        text += [
            "**Warning:** the headline metrics do not match these scores ("
            + "; ".join(mismatch)
            + "): they may come from another split.",
            "",
        ]
    text.append(
        f"**Flagged: {flagged.height} of {segments.height} segment values** "
        f"({too_small} too small to judge)."
    )
    text.append("")
    text += [
        f"- {row['segment']} = {_cell(row['value'])}: {row['reason']}"
        for row in flagged.iter_rows(named=True)
    ] or ["No segment value is flagged."]
    text += ["", f"![ROC-AUC and calibration per segment value]({link.as_posix()})", ""]
    for column in segment_columns:
        text += [f"### {column}", "", _table(segments.filter(pl.col("segment") == column)), ""]

    summary = {
        "segment_columns": list(segment_columns),
        "segment_values": segments.height,
        "judged": segments.height - too_small,
        "too_small": too_small,
        "flagged": flagged.height,
        "flagged_segments": flagged.select(
            "segment", "value", "n", "auroc", "calibration_gap", "reason"
        ).to_dicts(),
        "overall": {
            k: reference[k]
            for k in ("n", "positive_rate", "mean_score", "auroc", "ece", "calibration_gap")
        },
        "thresholds": {
            "min_size": settings["min_size"],
            "max_auroc_gap": settings["max_auroc_gap"],
            "max_calibration_gap": cal_threshold,
            "min_z": settings["min_z"],
            "max_values": settings["max_values"],
        },
        "headline_mismatch": mismatch,
        "notes": list(notes),
    }
    return ReportSection(
        title=title,
        markdown="\n".join(text).rstrip() + "\n",
        figures={"fairness": figure},
        tables={"fairness": metrics},
        summary=json_safe(summary),
    )


_COLOURS = {"flagged": "crimson", "ok": "C0", "too small to judge": "0.7"}


def write_fairness_figure(metrics: pl.DataFrame, max_auroc_gap: float, path: Path) -> Path:
    """One row per segment column: each value's ROC-AUC as a dot on a stem from the overall
    (left; dots, not bars, because the axis does not start at 0), and its positive rate and
    mean score joined by a line whose length is the calibration gap (right). Colour = status.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    plt = pyplot()

    reference = metrics.row(0, named=True)
    segments = metrics.filter(pl.col("status") != "reference")
    columns = list(dict.fromkeys(segments["segment"].to_list()))
    heights = [0.3 * int((segments["segment"] == c).sum()) + 0.9 for c in columns]
    fig, grid = plt.subplots(
        len(columns),
        2,
        figsize=(11, sum(heights) + 1.2),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
    )
    finite = segments.filter(pl.col("auroc").is_not_nan())["auroc"].to_list()
    low = min([reference["auroc"] - max_auroc_gap, *finite]) - 0.05
    low = max(0.0, min(low, 0.45)) if math.isfinite(low) else 0.0
    for (ax_auc, ax_cal), column in zip(grid, columns, strict=True):
        rows = segments.filter(pl.col("segment") == column)
        ys = list(range(rows.height))
        labels = [f"{_short(v)} (n={n:,})" for v, n in zip(rows["value"], rows["n"], strict=True)]
        colours = [_COLOURS[s] for s in rows["status"]]
        aurocs = rows["auroc"].to_list()
        ax_auc.axvspan(low, reference["auroc"] - max_auroc_gap, color="crimson", alpha=0.06)
        ax_auc.axvline(reference["auroc"], color="k", lw=1)
        for y, auroc, colour in zip(ys, aurocs, colours, strict=True):
            if math.isnan(auroc):
                ax_auc.text(low + 0.01, y, "n/a (one class)", va="center", fontsize=7)
                continue
            ax_auc.plot([reference["auroc"], auroc], [y, y], color=colour, lw=2)
            ax_auc.scatter([auroc], [y], color=colour, s=36, zorder=3)
        ax_auc.set_xlim(low, 1.02)  # room for a dot at 1.0
        ax_auc.set_ylim(len(ys) - 0.5, -0.5)  # first value on top, as in the table
        ax_auc.set_yticks(ys, labels, fontsize=8)
        ax_auc.set_title(f"{column}: ROC-AUC", fontsize=9, loc="left")
        ax_auc.grid(axis="x", alpha=0.3)

        rates, means = rows["positive_rate"].to_list(), rows["mean_score"].to_list()
        ax_cal.axvline(reference["positive_rate"], color="k", lw=1, ls="--")
        ax_cal.hlines(ys, rates, means, colors=colours, lw=2)
        ax_cal.scatter(means, ys, marker="D", c=colours, s=30, zorder=3)
        # hollow and on top: a calibrated value shows its diamond inside the circle
        ax_cal.scatter(rates, ys, marker="o", facecolors="none", edgecolors="k", s=60, zorder=4)
        ax_cal.set_ylim(len(ys) - 0.5, -0.5)
        ax_cal.set_yticks(ys, [""] * len(ys))
        ax_cal.margins(x=0.08)
        ax_cal.set_title(
            f"{column}: positive rate vs mean score "
            f"(overall gap {reference['calibration_gap']:+.3f})",
            fontsize=9,
            loc="left",
        )
        ax_cal.grid(axis="x", alpha=0.3)
    overall_rate = f"overall positive rate ({reference['positive_rate']:.3f})"
    below = f"more than {max_auroc_gap:g} below overall"
    handles = [
        Line2D([], [], color="k", lw=1, label=f"overall ROC-AUC ({reference['auroc']:.3f})"),
        Rectangle((0, 0), 1, 1, color="crimson", alpha=0.15, label=below),
        Line2D([], [], color="k", lw=1, ls="--", label=overall_rate),
        Line2D([], [], marker="o", ls="", mfc="none", mec="k", label="positive rate"),
        Line2D([], [], marker="D", ls="", color="0.3", label="mean score"),
        *[Line2D([], [], marker="o", color=c, lw=2, label=s) for s, c in _COLOURS.items()],
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    fig.suptitle("Segment fairness: ROC-AUC and calibration per segment value", fontsize=10)
    return save_png(fig, path)


def _short(value: str, width: int = 24) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"
