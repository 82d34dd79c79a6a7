"""Raw event table -> the canonical columns the sample builder works on.

Canonical columns: ``user_key`` (UInt64, a hash of the user id, keyed when a salt is set, so
raw ids go no further), ``ts`` (Int64 epoch seconds, UTC), ``event_type`` (String),
``channel`` (String). Epoch seconds are used end to end because the exported artifact takes
int64 timestamps, so training and serving share one time representation.

`to_canonical` only converts; rows it cannot use are *flagged* (see `DROP_REASONS`), counted by
`ingest.validate_events`, and removed there, so no row disappears without a count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

NO_CHANNEL = "none"  # channel value when the table has no channel column
USER_KEY_SEED = 0x5EED_E1A6
ROW_INDEX = "_row"  # input order; ties at the same second keep it

# Why a row can be dropped, in priority order: a row is counted under its first reason, so the
# counts add up to exactly the rows removed.
DROP_REASONS: tuple[str, ...] = (
    "null_user",
    "null_timestamp",
    "unparseable_timestamp",
    "null_event_type",
    "consent_opt_out",
    "out_of_date_range",
    "duplicate_event",
)
# epoch integers: magnitude -> unit ('auto'). Seconds stay below 1e11 until the year 5138,
# milliseconds exceed it from 1973 on, so the ranges do not overlap for real data.
_EPOCH_DIVISORS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_ISO_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S%.f%:z", True),
    ("%Y-%m-%d %H:%M:%S%.f%:z", True),
    ("%Y-%m-%dT%H:%M:%S%.f", False),
    ("%Y-%m-%d %H:%M:%S%.f", False),
    ("%Y-%m-%dT%H:%M", False),
    ("%Y-%m-%d %H:%M", False),
    ("%Y-%m-%d", False),
)


# A column with more distinct values than this, and than half the users, is identifier-like.
IDENTIFIER_MIN_VALUES = 50


def looks_like_identifier(n_distinct: int, n_users: int) -> bool:
    """About one value per user (an e-mail, a device id): such a column's values must never be
    listed in a report or a drift table, whatever role the user gave the column."""
    return n_distinct > max(IDENTIFIER_MIN_VALUES, n_users // 2)


class EventSchemaError(ValueError):
    """The raw event table cannot be mapped onto the canonical schema."""


def first_line(exc: BaseException) -> str:
    """The first line of an error: Polars appends hints about options users cannot set."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_error(where: str, exc: BaseException) -> EventSchemaError:
    """A Polars read failure as an EventSchemaError naming ``where`` and what to do."""
    message = str(exc)
    if "utf-8" in message.lower() or "utf8" in message.lower():
        hint = "the CSV is not UTF-8: re-encode it (e.g. iconv -f latin1 -t utf-8)"
    elif "more fields than" in message or "ragged" in message:
        hint = (
            "a row has more fields than the header: check the quoting (a separator inside an "
            "unquoted value, an unclosed quote) and data.source.csv_separator"
        )
    elif "could not parse" in message:
        hint = (
            "a value does not fit the column type inferred from the first 10,000 rows, or a "
            "quote is left open: fix the value or the quoting, read the column as text "
            "(data.source.csv_string_columns), or convert the file to Parquet"
        )
    else:
        hint = (
            "check that it is valid Parquet, or UTF-8 CSV with a header row, the configured "
            "separator and balanced quotes"
        )
    return EventSchemaError(f"cannot read {where}: {first_line(exc)}. Likely cause: {hint}")


@dataclass(frozen=True)
class ColumnMapping:
    """Which of the user's columns plays which role; the user's files are never renamed.

    ``timezone`` applies to naive datetimes and to ISO strings without an offset.
    ``epoch_unit`` applies to integer timestamps: 's', 'ms', 'us', 'ns' or 'auto' (by
    magnitude). ``consent``: a boolean column, false = the user opted out (all their rows
    are excluded and counted).
    """

    user_id: str = "user_id"
    timestamp: str = "timestamp"
    event_type: str = "event_type"
    channel: str | None = "channel"
    categorical: tuple[str, ...] = field(default_factory=tuple)
    numeric: tuple[str, ...] = field(default_factory=tuple)
    consent: str | None = None
    timezone: str = "UTC"
    epoch_unit: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "categorical", tuple(self.categorical))
        object.__setattr__(self, "numeric", tuple(self.numeric))
        if self.epoch_unit not in ("auto", *_EPOCH_DIVISORS):
            raise ValueError(
                f"epoch_unit must be 'auto', 's', 'ms', 'us' or 'ns', got {self.epoch_unit!r}"
            )
        roles = [self.user_id, self.timestamp, self.event_type, self.channel, self.consent]
        used = [c for c in roles if c is not None] + list(self.categorical) + list(self.numeric)
        repeated = sorted({c for c in used if used.count(c) > 1})
        if repeated:
            raise ValueError(f"column(s) {repeated} mapped to more than one role")

    def required(self) -> dict[str, str]:
        roles = {"user_id": self.user_id, "timestamp": self.timestamp}
        roles["event_type"] = self.event_type
        for name, column in (("channel", self.channel), ("consent", self.consent)):
            if column is not None:
                roles[name] = column
        roles.update({f"categorical {c!r}": c for c in self.categorical})
        roles.update({f"numeric {c!r}": c for c in self.numeric})
        return roles


def _epoch_seconds_from_integers(col: pl.Expr, unit: str) -> pl.Expr:
    if unit != "auto":
        return col.cast(pl.Int64) // _EPOCH_DIVISORS[unit]
    magnitude = col.cast(pl.Int64).abs()  # per value: one stray ms row cannot shift the rest
    return (
        pl.when(magnitude < 10**11)
        .then(col.cast(pl.Int64))
        .when(magnitude < 10**14)
        .then(col.cast(pl.Int64) // 1_000)
        .when(magnitude < 10**17)
        .then(col.cast(pl.Int64) // 1_000_000)
        .otherwise(col.cast(pl.Int64) // 1_000_000_000)
    )


def _epoch_seconds_from_strings(col: pl.Expr, timezone: str) -> pl.Expr:
    """ISO-8601 strings, mixed formats allowed; naive ones are in ``timezone``."""
    text = col.str.strip_chars().str.replace(r"Z$", "+00:00")
    parsed = []
    for fmt, has_offset in _ISO_FORMATS:
        value = text.str.to_datetime(fmt, strict=False, time_unit="us")
        if not has_offset:
            value = value.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
        parsed.append(value.dt.epoch("s"))
    return pl.coalesce(parsed)


def timestamp_to_epoch_seconds(name: str, dtype: pl.DataType, mapping: ColumnMapping) -> pl.Expr:
    """Expression converting the mapped timestamp column to Int64 epoch seconds (UTC)."""
    col = pl.col(name)
    if dtype == pl.Null:  # an all-null column stored without a type: every row null_timestamp
        return pl.lit(None, dtype=pl.Int64)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            col = col.dt.replace_time_zone(
                mapping.timezone, ambiguous="earliest", non_existent="null"
            )
        return col.dt.epoch("s")
    if isinstance(dtype, pl.Date):
        return col.cast(pl.Datetime("us")).dt.replace_time_zone(mapping.timezone).dt.epoch("s")
    if dtype.is_integer():
        return _epoch_seconds_from_integers(col, mapping.epoch_unit)
    if dtype.is_float():
        return _epoch_seconds_from_integers(col.round(0), mapping.epoch_unit)
    if dtype == pl.String:
        return _epoch_seconds_from_strings(col, mapping.timezone)
    raise EventSchemaError(
        f"timestamp column {name!r} has type {dtype}; expected a datetime, ISO-8601 strings or "
        "integer epoch seconds/milliseconds. Map another column (data.columns.timestamp) or "
        "convert it."
    )


def _finite(x: pl.Expr) -> pl.Expr:
    """NaN and ±inf become missing: one of them would otherwise poison the scaling statistics."""
    return pl.when(x.is_finite()).then(x)


def check_columns(schema: pl.Schema, mapping: ColumnMapping, where: str) -> None:
    """Raise EventSchemaError naming every mapped column the table lacks."""
    missing = {role: col for role, col in mapping.required().items() if col not in schema}
    if missing:
        wanted = ", ".join(f"{role} -> {col!r}" for role, col in missing.items())
        names = list(schema.names())
        glued = len(names) == 1 and any(sep in names[0] for sep in (";", "\t", "|"))
        hint = (
            " The header is one column: the file uses another separator, set "
            "data.source.csv_separator."
            if glued
            else ""
        )
        raise EventSchemaError(
            f"{where} lacks required column(s): {wanted}. Available: {names}. "
            "Set the column mapping (data.columns in the config) to the names your table uses."
            + hint
        )
    if mapping.consent is not None:
        dtype = schema[mapping.consent]
        if not (dtype == pl.Boolean or dtype.is_integer()):
            raise EventSchemaError(
                f"{where}: consent column {mapping.consent!r} has type {dtype}; it must be "
                "boolean (true = consent given) or 0/1. Convert it, or list opted-out users in "
                "data.ingest.opt_out_path instead."
            )
    for column in mapping.numeric:
        dtype = schema[column]
        if not (dtype.is_numeric() or dtype in (pl.String, pl.Boolean, pl.Null)):
            raise EventSchemaError(
                f"{where}: numeric column {column!r} has type {dtype}, which cannot be "
                "converted to a number; declare it as categorical instead"
            )


def to_canonical(
    events: pl.LazyFrame,
    mapping: ColumnMapping | None = None,
    where: str = "event table",
) -> pl.LazyFrame:
    """Select and convert the mapped columns, adding the drop flags of `DROP_REASONS`.

    Flags computed here: null_user, null_timestamp, unparseable_timestamp, null_event_type,
    consent_opt_out. The rest need settings or whole-table context and are added by
    `ingest.validate_events`. ``user_key`` is the unkeyed hash; `ingest` swaps in HMAC keys
    when a salt is configured.
    """
    mapping = mapping or ColumnMapping()
    try:
        schema = events.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise read_error(where, exc) from exc
    check_columns(schema, mapping, where)
    ts_name = mapping.timestamp
    channel = (
        pl.col(mapping.channel).cast(pl.String).fill_null(NO_CHANNEL)
        if mapping.channel is not None
        else pl.lit(NO_CHANNEL, dtype=pl.String)
    )
    consent_ok = (
        pl.col(mapping.consent)
        .cast(pl.Boolean, strict=False)
        .fill_null(True)
        .all()
        .over(pl.col(mapping.user_id))
        if mapping.consent is not None
        else pl.lit(True)
    )
    user = pl.col(mapping.user_id).cast(pl.String)
    ts = timestamp_to_epoch_seconds(ts_name, schema[ts_name], mapping)
    columns = [
        pl.int_range(pl.len(), dtype=pl.UInt64).alias(ROW_INDEX),
        user.alias("user_id"),
        user.hash(seed=USER_KEY_SEED).alias("user_key"),
        ts.alias("ts"),
        pl.col(mapping.event_type).cast(pl.String).alias("event_type"),
        channel.alias("channel"),
        *[
            pl.col(c).cast(pl.String).fill_null(NO_CHANNEL).alias(f"cat_{c}")
            for c in mapping.categorical
        ],
        *[
            _finite(pl.col(c).cast(pl.Float64, strict=False)).alias(f"num_{c}")
            for c in mapping.numeric
        ],
        pl.col(mapping.user_id).is_null().alias("null_user"),
        pl.col(ts_name).is_null().alias("null_timestamp"),
        (pl.col(ts_name).is_not_null() & ts.is_null()).alias("unparseable_timestamp"),
        pl.col(mapping.event_type).is_null().alias("null_event_type"),
        (~consent_ok).alias("consent_opt_out"),
    ]  # fmt: skip
    return events.select(columns)
