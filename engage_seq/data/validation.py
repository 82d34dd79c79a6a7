"""Raw events -> clean canonical events plus a report in which every dropped row is counted.

`validate_events` flags unusable rows (`schema.to_canonical` and the ingest settings), counts
them by reason in one scan, refuses an input that loses too much (`check_drops`), and
pseudonymises the kept users (`ingest.user_keys`). ``rows_read == rows_kept +
sum(rows_dropped.values())`` always holds, and no message or report ever shows a user id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from engage_seq.common.messages import example_value
from engage_seq.common.times import format_instant, parse_instant
from engage_seq.data.id_lists import check_opt_out, listed_count, read_opt_out_ids
from engage_seq.data.ingest import IngestConfig, user_keys
from engage_seq.data.schema import (
    DROP_REASONS,
    DST_AMBIGUOUS,
    DST_NONEXISTENT,
    NO_CHANNEL,
    ROW_INDEX,
    ColumnMapping,
    EventSchemaError,
    read_error,
    to_canonical,
)

log = logging.getLogger(__name__)


@dataclass
class ValidatedEvents:
    """Clean canonical events (lazy), the ingest report, and the kept time span."""

    events: pl.LazyFrame
    report: dict[str, Any]
    ts_min: int | None
    ts_max: int | None


def check_drops(
    rows_dropped: dict[str, int],
    rows_kept: int,
    config: IngestConfig,
    where: str,
    example: Callable[[str], str] = lambda reason: "",
) -> None:
    """Refuse empty input, all rows dropped, or more than ``max_drop_fraction`` dropped.

    ``example(reason)`` describes one offending value; it is only called to raise an error.
    """
    rows_read = rows_kept + sum(rows_dropped.values())
    if rows_read == 0:
        raise EventSchemaError(f"{where} is empty: no rows to build samples from")
    worst = max(rows_dropped, key=rows_dropped.__getitem__)
    if rows_kept == 0:
        raise EventSchemaError(
            f"{where}: all {rows_read} rows were dropped, mostly for {worst} "
            f"({rows_dropped[worst]} rows){example(worst)}. "
            "Check the column mapping, timezone/epoch_unit and the date range."
        )
    dropped = rows_read - rows_kept
    if dropped > config.max_drop_fraction * rows_read:
        raise EventSchemaError(
            f"{where}: {dropped} of {rows_read} rows ({dropped / rows_read:.1%}) would be "
            f"dropped, above max_drop_fraction={config.max_drop_fraction}; largest reason "
            f"{worst} ({rows_dropped[worst]} rows){example(worst)}. "
            f"All reasons: {rows_dropped}. Fix the data or mapping, or raise max_drop_fraction."
        )
    if dropped:
        log.warning("%s: dropped %d of %d rows: %s", where, dropped, rows_read,
                    {k: v for k, v in rows_dropped.items() if v})  # fmt: skip


def _category_columns(mapping: ColumnMapping) -> list[tuple[str, str]]:
    """(the table's column name, canonical column) for the channel, when the table has one,
    and each categorical attribute: the columns whose missing values become "none"."""
    channel = [(mapping.channel, "channel")] if mapping.channel else []
    return [*channel, *((c, f"cat_{c}") for c in mapping.categorical)]


def _example(
    raw: pl.LazyFrame, canonical: pl.LazyFrame, reason: str, mapping: ColumnMapping
) -> str:
    """One offending value for an error message (`messages.example_value`: never a value of
    the user-id column or of an identifier-like one)."""
    if reason not in ("unparseable_timestamp", "out_of_date_range", "null_event_type"):
        return ""
    row = canonical.filter(pl.col("drop_reason") == reason).select(ROW_INDEX).head(1).collect()
    if row.height == 0:
        return ""
    column = mapping.event_type if reason == "null_event_type" else mapping.timestamp
    return f"; e.g. {column} = {example_value(raw, column, int(row.item()), mapping.user_id)}"


def _mark_opt_out(canonical: pl.LazyFrame, listed: pl.DataFrame | None) -> pl.LazyFrame:
    """Users on the opt-out list count as ``consent_opt_out``; ``_listed`` marks them, so the
    report can say how many of the list's users the table holds."""
    if listed is None:
        return canonical
    return canonical.join(
        listed.lazy().select("user_id", pl.lit(True).alias("_listed")),
        on="user_id",
        how="left",
        maintain_order="left",
    ).with_columns(
        pl.col("_listed").fill_null(False),
        (pl.col("consent_opt_out") | pl.col("_listed").fill_null(False)).alias("consent_opt_out"),
    )


def _flag_rows(canonical: pl.LazyFrame, config: IngestConfig) -> pl.LazyFrame:
    """Add the ingest settings' flags (date range, duplicates) and ``drop_reason``: the first
    `DROP_REASONS` entry a row fails, null for a kept row."""
    in_range = pl.lit(True)
    if config.start:
        in_range = in_range & (pl.col("ts") >= parse_instant(config.start))
    if config.end:
        in_range = in_range & (pl.col("ts") < parse_instant(config.end))
    identity = ["user_key", "ts", "event_type", "channel"]
    identity += [c for c in canonical.collect_schema().names() if c.startswith(("cat_", "num_"))]
    # hashing the row first is ~20% faster than distinct-on-struct; a 64-bit collision could
    # only merge two distinct events of the same table, ~n²/2^65 (1e-5 at 1e7 rows)
    duplicate = (
        ~pl.struct(identity).hash().is_first_distinct() if config.drop_duplicates else pl.lit(False)
    )
    return canonical.with_columns(
        (pl.col("ts").is_not_null() & ~in_range).alias("out_of_date_range"),
        duplicate.alias("duplicate_event"),
    ).with_columns(
        pl.coalesce([pl.when(pl.col(r)).then(pl.lit(r)) for r in DROP_REASONS]).alias("drop_reason")
    )


def _kept_stats(kept: pl.DataFrame, mapping: ColumnMapping) -> pl.DataFrame:
    """One row of report figures over the kept rows: users, event types, time span, missing
    numeric and categorical values, DST-ambiguous local times."""
    return kept.select(
        pl.col("user_id").n_unique().alias("users"),
        pl.col("event_type").unique().sort().implode().alias("event_types"),
        pl.col("ts").min().alias("ts_min"),
        pl.col("ts").max().alias("ts_max"),
        *[pl.col(f"num_{c}").null_count().alias(f"num_{c}") for c in mapping.numeric],
        *[
            (pl.col(c) == NO_CHANNEL).sum().alias(f"missing_{c}")
            for _, c in _category_columns(mapping)
        ],
        pl.col(DST_AMBIGUOUS).sum().alias("dst_ambiguous"),
    )


def merge_same_instant(kept: pl.LazyFrame) -> pl.LazyFrame:
    """Rows of one user at the same second with the same event type as one event: the line
    items of an order. Numeric attributes are summed (null only when every row's is), the
    channel and categoricals are the first row's in input order (``ROW_INDEX``), which the
    merged event keeps. The event type is part of the key: a view and a purchase in the same
    second are two events, and the line items of one order share their type.
    """
    names = kept.collect_schema().names()
    key = [c for c in ("user_id", "user_key", "ts", "event_type") if c in names]
    first = [c for c in names if c not in key and not c.startswith("num_")]
    summed = [c for c in names if c.startswith("num_")]
    return (
        kept.sort(ROW_INDEX)
        .group_by(key)
        .agg(
            *[pl.col(c).first() for c in first],
            *[pl.when(pl.col(c).count() > 0).then(pl.col(c).sum()).alias(c) for c in summed],
        )
        .sort(ROW_INDEX)
        .select(names)
    )


def _drop_counts(flagged: pl.DataFrame) -> tuple[int, dict[str, int]]:
    """(rows kept, rows dropped per reason, every reason listed)."""
    by_reason = {r: 0 for r in DROP_REASONS}
    rows_kept = 0
    for reason, n in flagged.group_by("drop_reason").len().iter_rows():
        if reason is None:
            rows_kept = n
        else:
            by_reason[reason] = n
    return rows_kept, by_reason


def _opt_out_counts(
    flagged: pl.DataFrame, listed: pl.DataFrame | None, config: IngestConfig
) -> dict[str, int] | None:
    """How many users the opt-out list holds and how many of them the table holds (None
    without a list)."""
    if listed is None:
        return None
    matched_ids = flagged.filter(pl.col("_listed"))["user_id"].unique()
    users_listed = listed_count(listed, matched_ids, "opt-out list", str(config.opt_out_path))
    return {"users_listed": users_listed, "users_matched": matched_ids.len()}


def _keyed(kept: pl.LazyFrame, salt_env: str) -> pl.LazyFrame:
    """With a salt in ``$salt_env``, replace the unkeyed ``user_key`` by its HMAC (one per
    distinct user, `ingest.user_keys`)."""
    users = kept.select("user_id").unique().collect()["user_id"]
    keys = pl.DataFrame({"user_id": users, "user_key": user_keys(users, salt_env)})
    return kept.drop("user_key").join(keys.lazy(), on="user_id", how="left", maintain_order="left")


def _report(
    where: str,
    rows_kept: int,
    by_reason: dict[str, int],
    stats: pl.DataFrame,
    dst_nonexistent: int,
    salted: bool,
    opt_out: dict[str, int] | None,
    mapping: ColumnMapping,
) -> dict[str, Any]:
    """The ingest report (JSON-ready; never a user id)."""
    ts_min, ts_max = stats["ts_min"].item(), stats["ts_max"].item()
    return {
        "source": where,
        "rows_read": rows_kept + sum(by_reason.values()),
        "rows_kept": rows_kept,
        "rows_dropped": by_reason,
        "users": stats["users"].item(),
        "event_types": stats["event_types"].item().to_list(),
        "time_span": [
            format_instant(ts_min) if ts_min is not None else None,
            format_instant(ts_max) if ts_max is not None else None,
        ],
        "user_keys": "hmac-sha256" if salted else "unkeyed-hash",
        # kept rows whose value is null, NaN, ±inf or not a number: scaled as missing (0)
        "numeric_missing": {c: stats[f"num_{c}"].item() for c in mapping.numeric},
        # kept rows without a channel / categorical value (or with the literal "none"): one
        # category, "none", for the model
        "categorical_missing": {
            name: stats[f"missing_{c}"].item() for name, c in _category_columns(mapping)
        },
        # naive local times at a DST change (data.columns.timezone): kept as the earlier of
        # the two instants (ambiguous), or dropped as unparseable_timestamp (nonexistent)
        "timestamp_dst": {
            "ambiguous": stats["dst_ambiguous"].item(),
            "nonexistent": dst_nonexistent,
        },
        # users in data.ingest.opt_out_path, and how many of them the table holds (None: no list)
        "opt_out": opt_out,
    }


def validate_events(
    raw: pl.LazyFrame,
    mapping: ColumnMapping | None = None,
    config: IngestConfig | None = None,
    where: str = "event table",
    partial: bool = False,
    keep_user_id: bool = False,
) -> ValidatedEvents:
    """Flag, count and drop unusable rows; pseudonymise users. One pass collects the counts.

    ``partial``: the table is one user-hash shard of a larger one; the whole-table checks
    (`check_drops`) are then left to the caller, on the merged counts. ``keep_user_id``: also
    return the raw ``user_id`` column (batch scoring must name the users it scores; training
    never asks for it, so raw ids cannot reach samples, caches or checkpoints).
    """
    mapping = mapping or ColumnMapping()
    config = config or IngestConfig()
    canonical = to_canonical(raw, mapping, where)  # first: a wrong mapping is named first
    listed = read_opt_out_ids(config, mapping)
    canonical = _flag_rows(_mark_opt_out(canonical, listed), config)
    try:  # one scan of the input: everything after this works on the collected frame
        flagged = canonical.collect()
    except pl.exceptions.PolarsError as exc:
        raise read_error(where, exc) from exc
    kept_frame = flagged.filter(pl.col("drop_reason").is_null())
    stats = _kept_stats(kept_frame, mapping)
    if config.merge_same_instant:  # after the counts: merged rows were read and kept
        kept_frame = merge_same_instant(kept_frame.lazy()).collect()
    dst_nonexistent = flagged.select(
        (pl.col(DST_NONEXISTENT) & (pl.col("drop_reason") == "unparseable_timestamp")).sum()
    ).item()
    opt_out = _opt_out_counts(flagged, listed, config)
    rows_kept, by_reason = _drop_counts(flagged)
    if not partial:
        canonical = flagged.lazy()
        check_drops(
            by_reason, rows_kept, config, where, lambda r: _example(raw, canonical, r, mapping)
        )
        check_opt_out(opt_out, config, where)
    salted = bool(os.environ.get(config.salt_env, ""))
    kept = _keyed(kept_frame.lazy(), config.salt_env) if salted else kept_frame.lazy()
    report = _report(where, rows_kept, by_reason, stats, dst_nonexistent, salted, opt_out, mapping)
    # rows folded into an earlier row of the same user, instant and type (0 when not merging)
    report["rows_merged_same_instant"] = rows_kept - kept_frame.height
    columns = [ROW_INDEX, "user_key", *(["user_id"] if keep_user_id else []), "ts"]
    columns += ["event_type", "channel"]
    columns += [c for c in kept.collect_schema().names() if c.startswith(("cat_", "num_"))]
    return ValidatedEvents(
        kept.select(columns), report, stats["ts_min"].item(), stats["ts_max"].item()
    )
