"""Segment values per sample: the first step of segment fairness
(`engage_seq.evaluation.fairness`), one value per sample and segment column.

*Derived* segments come from the sample itself (history-length bucket, channel of the last
event before the cutoff); *declared* ones are user attributes in the raw event table, read
through the run's own source, column mapping and ingest rules, so users get the keys they had
in training. A declared value is the user's last non-null one strictly before the sample's
cutoff (the leakage rule: a country first recorded at the cutoff is not what the model could
have known). The column checks need only a schema, so training runs them before any work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import pairwise

import polars as pl

from engage_seq.common.messages import describe_columns
from engage_seq.data.build import EventSource
from engage_seq.data.ingest import IngestConfig
from engage_seq.data.schema import ROW_INDEX, ColumnMapping, EventSchemaError, looks_like_identifier
from engage_seq.data.validation import validate_events

log = logging.getLogger(__name__)

MISSING = "(missing)"  # no value before the cutoff: counted as its own segment value, not dropped
DERIVED_SEGMENTS = ("history_length", "last_channel")
# columns the segment pipeline and the report add next to segment values: a declared segment
# column of one of these names would collide with them (a DuplicateError, or a silent overwrite)
RESERVED_SEGMENT_NAMES = (ROW_INDEX, "_sample", "user_key", "ts", "cutoff", "score", "label")
# Lower bounds of the history-length buckets: log-spaced because 1 event (cold start) and 64+
# (the default max_len: the model sees a truncated history) behave very differently.
HISTORY_BOUNDS = (1, 2, 5, 16, 64)


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
    schema, so `engage_seq.experiments.run` runs it before any work."""
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
    _check_segment_request(samples, columns, derived)
    exprs = {"history_length": history_bucket(history_bounds), "last_channel": last_channel()}
    out = samples.lazy().select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_sample"),
        *(exprs[d].alias(d) for d in derived),
    )
    if columns:
        raw, where, columns = _present_columns(source, derived, columns, missing)
        if columns:
            events = _segment_events(
                raw, where, mapping or ColumnMapping(), ingest or IngestConfig(), columns
            )
            out = _join_declared(out, samples, events, columns)
    frame = out.sort("_sample").drop("_sample").collect()
    if columns:
        _refuse_identifiers(frame, samples["user_key"], columns)
    return frame


def _check_segment_request(
    samples: pl.DataFrame, columns: Sequence[str], derived: Sequence[str]
) -> None:
    """Refuse unknown derived segments, a name given twice, and samples that lack the
    columns the requested segments are computed from."""
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


def _present_columns(
    source: EventSource | None,
    derived: Sequence[str],
    columns: Sequence[str],
    missing: dict[str, str] | None,
) -> tuple[pl.LazyFrame, str, Sequence[str]]:
    """(the raw table, its description, the declared ``columns`` to read): with ``missing``
    a dict, the columns the table lacks are recorded there and left out, else kept (and
    refused later, by `check_segment_columns`)."""
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
    return raw, where, columns


def _join_declared(
    out: pl.LazyFrame, samples: pl.DataFrame, events: pl.LazyFrame, columns: Sequence[str]
) -> pl.LazyFrame:
    """``out`` with each declared column's value before every sample's cutoff, by
    ``_sample``; ``events`` as `_segment_events` reads them."""
    keys = samples.lazy().select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_sample"), "user_key", "cutoff"
    )
    events = events.join(keys.select("user_key").unique(), on="user_key", how="semi")
    events = events.collect().lazy()  # one validation, shared by every column below
    keys = keys.sort("cutoff")
    for column in columns:
        out = out.join(_value_before_cutoff(keys, events, column), on="_sample", how="left")
    return out


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
