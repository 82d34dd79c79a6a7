"""Timestamp columns -> Int64 epoch seconds (UTC), as Polars expressions.

Split from `engage_seq.data.schema`, which picks the conversion by the column's type
(`engage_seq.data.schema.timestamp_exprs`): epoch integers in any unit (or detected per value),
ISO-8601 strings in mixed formats, naive datetimes read in the mapped time zone with the DST rule
of `TimestampExprs`. Out-of-range values become null, so the row is counted as unparseable
rather than crashing a formatter later.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# epoch integers: magnitude -> unit ('auto'). Seconds stay below 1e11 until the year 5138,
# milliseconds exceed it from 1973 on, so the ranges do not overlap for real data.
EPOCH_DIVISORS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_ISO_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S%.f%:z", True),
    ("%Y-%m-%d %H:%M:%S%.f%:z", True),
    ("%Y-%m-%dT%H:%M:%S%.f", False),
    ("%Y-%m-%d %H:%M:%S%.f", False),
    ("%Y-%m-%dT%H:%M", False),
    ("%Y-%m-%d %H:%M", False),
    ("%Y-%m-%d", False),
)


# The instants Python's datetime can show (years 1 to 9999). An epoch outside them is a
# placeholder or garbage (int64 min, a wrong unit) and formatting it raises, so such a row is
# flagged unparseable_timestamp, like text that is no date.
MIN_EPOCH_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
DATE_DAYS = (-719_162, 2_932_896)  # the same range in days since 1970-01-01
_DAY = 86_400


@dataclass(frozen=True)
class TimestampExprs:
    """How the mapped timestamp column becomes epoch seconds (three ``pl.Expr``).

    ``seconds``: Int64 epoch seconds (UTC) within years 1-9999, null when the value is missing
    or unusable. ``dst_ambiguous``: a naive local time in a fall-back hour (it happens twice);
    it is kept as the *earlier* instant and counted. ``dst_nonexistent``: a naive local time in
    a spring-forward gap (it never happens); its ``seconds`` is null, so the row is dropped as
    ``unparseable_timestamp``, and counted here too. Both are False for UTC.
    """

    seconds: pl.Expr
    dst_ambiguous: pl.Expr
    dst_nonexistent: pl.Expr


def in_range(seconds: pl.Expr) -> pl.Expr:
    return pl.when(seconds.is_between(MIN_EPOCH_SECONDS, MAX_EPOCH_SECONDS)).then(seconds)


def utc_instants(seconds: pl.Expr) -> TimestampExprs:
    return TimestampExprs(in_range(seconds), pl.lit(False), pl.lit(False))


def epoch_seconds_from_integers(col: pl.Expr, unit: str) -> pl.Expr:
    """Integers in ``unit`` -> seconds. Non-strict cast: a UInt64 beyond int64 becomes null.
    ``abs`` of int64 min wraps to itself, is taken for seconds and fails the range check."""
    value = col.cast(pl.Int64, strict=False)
    if unit != "auto":
        return value // EPOCH_DIVISORS[unit]
    magnitude = value.abs()  # per value: one stray ms row cannot shift the rest
    return (
        pl.when(magnitude < 10**11)
        .then(value)
        .when(magnitude < 10**14)
        .then(value // 1_000)
        .when(magnitude < 10**17)
        .then(value // 1_000_000)
        .otherwise(value // 1_000_000_000)
    )


def local_instants(naive: pl.Expr, timezone: str) -> TimestampExprs:
    """Naive datetimes read as wall-clock time in ``timezone`` (see `TimestampExprs` for the
    DST rule: ambiguous -> the earlier instant, nonexistent -> null; both counted)."""
    # the time-zone code panics (not an error: a crash) far outside its range: bound first
    naive = pl.when(
        naive.dt.epoch("s").is_between(MIN_EPOCH_SECONDS - _DAY, MAX_EPOCH_SECONDS + _DAY)
    ).then(naive)
    if timezone == "UTC":
        return utc_instants(naive.dt.epoch("s"))
    earliest = naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    either = naive.dt.replace_time_zone(timezone, ambiguous="null", non_existent="null")
    return TimestampExprs(
        in_range(earliest.dt.epoch("s")),
        earliest.is_not_null() & either.is_null(),
        naive.is_not_null() & earliest.is_null(),
    )


def epoch_seconds_from_strings(col: pl.Expr, timezone: str) -> TimestampExprs:
    """ISO-8601 strings, mixed formats allowed; naive ones are in ``timezone``. Text that is
    no date in these formats (or a year beyond 9999) gives null."""
    text = col.str.strip_chars().str.replace(r"Z$", "+00:00")
    parsed = {
        has_offset: [
            text.str.to_datetime(fmt, strict=False, time_unit="us")
            for fmt, offset in _ISO_FORMATS
            if offset == has_offset
        ]
        for has_offset in (True, False)
    }
    aware = in_range(pl.coalesce([value.dt.epoch("s") for value in parsed[True]]))
    local = local_instants(pl.coalesce(parsed[False]), timezone)
    return TimestampExprs(
        pl.coalesce([aware, local.seconds]),
        aware.is_null() & local.dst_ambiguous,
        aware.is_null() & local.dst_nonexistent,
    )
