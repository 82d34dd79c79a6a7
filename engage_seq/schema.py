"""Raw event table -> the canonical columns the sample builder works on.

Canonical columns: ``user_key`` (UInt64, a hash of the user id, so raw ids go no further),
``ts`` (Int64 epoch seconds, UTC), ``event_type`` (String), ``channel`` (String).
Epoch seconds are used end to end because the exported artifact takes int64 timestamps, so
training and serving share one time representation.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

NO_CHANNEL = "none"  # channel value when the table has no channel column
USER_KEY_SEED = 0x5EED_E1A6


class EventSchemaError(ValueError):
    """The raw event table cannot be mapped onto the canonical schema."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which of the user's columns plays which role; the user's files are never renamed."""

    user_id: str = "user_id"
    timestamp: str = "timestamp"
    event_type: str = "event_type"
    channel: str | None = "channel"


def _timestamp_to_epoch_seconds(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            col = col.dt.convert_time_zone("UTC")
        return col.dt.epoch("s")
    if isinstance(dtype, pl.Date):
        return col.cast(pl.Datetime("us")).dt.epoch("s")
    if dtype.is_integer():
        return col.cast(pl.Int64)
    if dtype == pl.String:
        return col.str.to_datetime(time_zone="UTC", strict=False).dt.epoch("s")
    raise EventSchemaError(
        f"timestamp column {name!r} has type {dtype}; expected a datetime, ISO-8601 strings or "
        "integer epoch seconds. Map another column with ColumnMapping(timestamp=...) or cast it."
    )


def to_canonical(events: pl.LazyFrame, mapping: ColumnMapping | None = None) -> pl.LazyFrame:
    """Select and convert the mapped columns; raises EventSchemaError naming what is missing.

    Rows with a null user, timestamp or event type are *kept* here; the build report
    (`sample_cache`) counts them and the sample builder drops them, so no drop goes uncounted.
    """
    mapping = mapping or ColumnMapping()
    schema = events.collect_schema()
    required = {"user_id": mapping.user_id, "timestamp": mapping.timestamp}
    required["event_type"] = mapping.event_type
    missing = {role: col for role, col in required.items() if col not in schema}
    if missing:
        wanted = ", ".join(f"{role} -> {col!r}" for role, col in missing.items())
        raise EventSchemaError(
            f"event table lacks required column(s): {wanted}. Available: {list(schema.names())}. "
            "Set the column mapping (data config) to the names your table uses."
        )
    if mapping.channel is not None and mapping.channel not in schema:
        raise EventSchemaError(
            f"channel column {mapping.channel!r} not in the event table (available: "
            f"{list(schema.names())}); map it to an existing column or set channel: null."
        )
    channel = (
        pl.col(mapping.channel).cast(pl.String)
        if mapping.channel is not None
        else pl.lit(NO_CHANNEL, dtype=pl.String)
    )
    return (
        events.select(
            pl.col(mapping.user_id).cast(pl.String).hash(seed=USER_KEY_SEED).alias("user_key"),
            _timestamp_to_epoch_seconds(mapping.timestamp, schema[mapping.timestamp]).alias("ts"),
            pl.col(mapping.event_type).cast(pl.String).alias("event_type"),
            channel.fill_null(NO_CHANNEL).alias("channel"),
            pl.col(mapping.user_id).is_null().alias("_null_user"),
        )
        .with_columns(
            # hash() maps null to a value; keep the null visible so it is counted and dropped.
            pl.when(pl.col("_null_user")).then(None).otherwise(pl.col("user_key")).alias("user_key")
        )
        .drop("_null_user")
    )
