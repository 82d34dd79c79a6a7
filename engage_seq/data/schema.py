"""Raw event table -> the canonical columns the sample builder works on.

Canonical columns: ``user_key`` (UInt64, a hash of the user id, keyed when a salt is set, so
raw ids go no further), ``ts`` (Int64 epoch seconds, UTC), ``event_type`` (String),
``channel`` (String). Epoch seconds are used end to end because the exported artifact takes
int64 timestamps, so training and serving share one time representation.

`to_canonical` only converts; rows it cannot use are *flagged* (see `DROP_REASONS`), counted by
`validation.validate_events`, and removed there, so no row disappears without a count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from engage_seq.common.errors import EngageSeqError
from engage_seq.common.messages import (  # noqa: F401  (looks_like_identifier: re-exported)
    describe_columns,
    first_row,
    header_looks_like_data,
    looks_like_identifier,
    redact_library_message,
)
from engage_seq.data.timestamps import (
    DATE_DAYS,
    EPOCH_DIVISORS,
    TimestampExprs,
    epoch_seconds_from_integers,
    epoch_seconds_from_strings,
    local_instants,
    utc_instants,
)

NO_CHANNEL = "none"  # channel value when the table has no channel column
USER_KEY_SEED = 0x5EED_E1A6
ROW_INDEX = "_row"  # input order; ties at the same second keep it
# flags of `to_canonical` that are counted, not dropped on (see `TimestampExprs`)
DST_AMBIGUOUS, DST_NONEXISTENT = "_dst_ambiguous", "_dst_nonexistent"

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


class EventSchemaError(EngageSeqError, ValueError):
    """The raw event table cannot be mapped onto the canonical schema."""


def first_line(exc: BaseException) -> str:
    """The first line of an error (Polars appends hints about options users cannot set),
    without the data values a library quotes in it (`redact_library_message`)."""
    return redact_library_message((str(exc).strip().splitlines() or [type(exc).__name__])[0])


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
    are excluded and counted). ``event_type`` None: the table has no event-type column (a
    purchase-only export); every row is then one event of type ``constant_event_type``, a
    value (not a column name), used only in that case.
    """

    user_id: str = "user_id"
    timestamp: str = "timestamp"
    event_type: str | None = "event_type"
    channel: str | None = "channel"
    categorical: tuple[str, ...] = field(default_factory=tuple)
    numeric: tuple[str, ...] = field(default_factory=tuple)
    consent: str | None = None
    timezone: str = "UTC"
    epoch_unit: str = "auto"
    constant_event_type: str = "purchase"

    def __post_init__(self) -> None:
        object.__setattr__(self, "categorical", tuple(self.categorical))
        object.__setattr__(self, "numeric", tuple(self.numeric))
        if self.epoch_unit not in ("auto", *EPOCH_DIVISORS):
            raise ValueError(
                f"epoch_unit must be 'auto', 's', 'ms', 'us' or 'ns', got {self.epoch_unit!r}"
            )
        if self.event_type is None and not str(self.constant_event_type or "").strip():
            raise ValueError(
                "data.columns.event_type is null (every row is one kind of event) but "
                "data.columns.constant_event_type is empty: name that kind, e.g. purchase"
            )
        roles = [self.user_id, self.timestamp, self.event_type, self.channel, self.consent]
        used = [c for c in roles if c is not None] + list(self.categorical) + list(self.numeric)
        repeated = sorted({c for c in used if used.count(c) > 1})
        if repeated:
            raise ValueError(f"column(s) {repeated} mapped to more than one role")

    def required(self) -> dict[str, str]:
        roles = {"user_id": self.user_id, "timestamp": self.timestamp}
        for name, column in (
            ("event_type", self.event_type),
            ("channel", self.channel),
            ("consent", self.consent),
        ):
            if column is not None:
                roles[name] = column
        roles.update({f"categorical {c!r}": c for c in self.categorical})
        roles.update({f"numeric {c!r}": c for c in self.numeric})
        return roles


def timestamp_exprs(name: str, dtype: pl.DataType, mapping: ColumnMapping) -> TimestampExprs:
    """The mapped timestamp column as epoch seconds plus its DST flags (`TimestampExprs`).
    Values outside years 1-9999, NaN and ±inf give null seconds (unparseable_timestamp)."""
    col = pl.col(name)
    if dtype == pl.Null:  # an all-null column stored without a type: every row null_timestamp
        return utc_instants(pl.lit(None, dtype=pl.Int64))
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return local_instants(col, mapping.timezone)
        return utc_instants(col.dt.epoch("s"))
    if isinstance(dtype, pl.Date):
        days = col.cast(pl.Int32)
        in_range = pl.when(days.is_between(*DATE_DAYS)).then(col)  # a far date cannot cast
        return local_instants(in_range.cast(pl.Datetime("us")), mapping.timezone)
    if dtype.is_integer():
        return utc_instants(epoch_seconds_from_integers(col, mapping.epoch_unit))
    if dtype.is_float():
        usable = pl.when(col.is_finite() & (col.abs() < 9.2e18)).then(col.round(0))
        return utc_instants(epoch_seconds_from_integers(usable, mapping.epoch_unit))
    if dtype == pl.String:
        return epoch_seconds_from_strings(col, mapping.timezone)
    raise EventSchemaError(
        f"timestamp column {name!r} has type {dtype}; expected a datetime, ISO-8601 strings or "
        "integer epoch seconds/milliseconds. Map another column (data.columns.timestamp) or "
        "convert it."
    )


def user_id_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """The user id as the text that every hash, join and id list uses, so an opt-out list
    written as text ("7") matches a table that stored the id as 7, 7.0 or " 7 ".

    Integers print as integers; a float holding an integer prints without its ".0" (NaN and
    ±inf are no id: null); text loses surrounding whitespace but keeps leading zeros ("007"
    is not "7") and is otherwise compared as written (a text "7.0" stays "7.0": rewriting
    text costs a regex per row, ~0.5 s per 10M events, and the match counts show a list in
    another format); blank text is null (counted as ``null_user``).
    """
    col = pl.col(column)
    if dtype.is_integer():
        return col.cast(pl.String)
    if dtype.is_float():
        integral = col.is_finite() & (col.round(0) == col) & (col.abs() < 9.2e18)
        return (
            pl.when(integral)
            .then(col.cast(pl.Int64, strict=False).cast(pl.String))
            .when(col.is_finite())
            .then(col.cast(pl.String))
        )
    text = col.cast(pl.String).str.strip_chars()
    return pl.when(text != "").then(text)


def _finite(x: pl.Expr) -> pl.Expr:
    """NaN and ±inf become missing: one of them would otherwise poison the scaling statistics."""
    return pl.when(x.is_finite()).then(x)


def check_columns(
    schema: pl.Schema, mapping: ColumnMapping, where: str, frame: pl.LazyFrame | None = None
) -> None:
    """Raise EventSchemaError naming every mapped column the table lacks. ``frame`` (the
    table itself) lets a CSV without a header row be recognised by its first record; its
    "column names" are data (a user id among them), so they are then never listed."""
    missing = {role: col for role, col in mapping.required().items() if col not in schema}
    if missing:
        wanted = ", ".join(f"{role} -> {col!r}" for role, col in missing.items())
        names = list(schema.names())
        if header_looks_like_data(names, first_row(frame)):
            raise EventSchemaError(
                f"{where} lacks required column(s): {wanted}. The first row of {where} looks "
                "like data, not a header (values not shown): add a header row naming the "
                "columns, then map them in data.columns."
            )
        glued = len(names) == 1 and any(sep in names[0] for sep in (";", "\t", "|"))
        hint = (
            " The header is one column: the file uses another separator, set "
            "data.source.csv_separator."
            if glued
            else ""
        )
        if "channel" in missing and not glued:  # the one role a table may lack (issue 20)
            hint += " A table without a channel column: set data.columns.channel=null."
        if "event_type" in missing and not glued:  # a purchase-only export (issue 21)
            hint += (
                " A table of one kind of event only (e.g. purchases, no event-type column): "
                "set data.columns.event_type=null (every row is then a "
                f"{mapping.constant_event_type!r}: data.columns.constant_event_type)."
            )
        raise EventSchemaError(
            f"{where} lacks required column(s): {wanted}. {describe_columns(names, where)} "
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
    consent_opt_out, and the DST counters `DST_AMBIGUOUS` / `DST_NONEXISTENT`. The rest need
    settings or whole-table context and are added by `validation.validate_events`. ``user_id`` is
    `user_id_text` (the form id lists are matched in); ``user_key`` is its unkeyed hash, and
    `ingest` swaps in HMAC keys when a salt is configured.
    """
    mapping = mapping or ColumnMapping()
    try:
        schema = events.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise read_error(where, exc) from exc
    check_columns(schema, mapping, where, events)
    ts_name = mapping.timestamp
    channel = (
        pl.col(mapping.channel).cast(pl.String).fill_null(NO_CHANNEL)
        if mapping.channel is not None
        else pl.lit(NO_CHANNEL, dtype=pl.String)
    )
    user = user_id_text(mapping.user_id, schema[mapping.user_id])
    consent_ok = (
        pl.col(mapping.consent).cast(pl.Boolean, strict=False).fill_null(True).all().over(user)
        if mapping.consent is not None
        else pl.lit(True)
    )
    time = timestamp_exprs(ts_name, schema[ts_name], mapping)
    ts = time.seconds
    event_type = (
        pl.col(mapping.event_type).cast(pl.String)
        if mapping.event_type is not None
        else pl.lit(mapping.constant_event_type, dtype=pl.String)
    )
    columns = [
        pl.int_range(pl.len(), dtype=pl.UInt64).alias(ROW_INDEX),
        user.alias("user_id"),
        user.hash(seed=USER_KEY_SEED).alias("user_key"),
        ts.alias("ts"),
        event_type.alias("event_type"),
        channel.alias("channel"),
        *[
            pl.col(c).cast(pl.String).fill_null(NO_CHANNEL).alias(f"cat_{c}")
            for c in mapping.categorical
        ],
        *[
            _finite(pl.col(c).cast(pl.Float64, strict=False)).alias(f"num_{c}")
            for c in mapping.numeric
        ],
        user.is_null().alias("null_user"),
        pl.col(ts_name).is_null().alias("null_timestamp"),
        (pl.col(ts_name).is_not_null() & ts.is_null()).alias("unparseable_timestamp"),
        event_type.is_null().alias("null_event_type"),
        (~consent_ok).alias("consent_opt_out"),
        time.dst_ambiguous.alias(DST_AMBIGUOUS),
        time.dst_nonexistent.alias(DST_NONEXISTENT),
    ]  # fmt: skip
    return events.select(columns)
