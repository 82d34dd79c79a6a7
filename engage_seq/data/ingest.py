"""Read event files lazily, validate them loudly, pseudonymise users, report every drop.

`FileEventSource` scans Parquet (file, directory, glob, hive-partitioned folders) or CSV.
`validate_events` turns any source into clean canonical events plus a report in which
``rows_read == rows_kept + sum(rows_dropped.values())`` always holds.

Privacy: with a salt in the environment variable ``salt_env`` (never in a config file), user
keys are HMAC-SHA256(salt, user_id) truncated to 64 bits; without one they are an unkeyed
64-bit hash. Either way the raw id column is dropped before anything is built or written, and
no error message or report ever shows a user id.
"""

from __future__ import annotations

import glob
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engage_seq.common.messages import (
    describe_columns,
    example_value,
    first_row,
    header_looks_like_data,
)
from engage_seq.common.times import format_instant, parse_instant
from engage_seq.data.listing import check_readable, folder_files, refuse_repeats
from engage_seq.data.schema import (
    DROP_REASONS,
    DST_AMBIGUOUS,
    DST_NONEXISTENT,
    NO_CHANNEL,
    ROW_INDEX,
    USER_KEY_SEED,
    ColumnMapping,
    EventSchemaError,
    first_line,
    read_error,
    to_canonical,
    user_id_text,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEventSource:
    """Event files on disk, read lazily.

    ``path``: a file, a directory (all Parquet/CSV files below it, hive partitions included)
    or a glob such as ``exports/2026-*/events.parquet``.
    """

    path: str
    format: str = "auto"  # parquet | csv | auto (by file extension)
    hive_partitioning: bool | None = None  # None: detect for directories
    csv_separator: str = ","
    # CSV columns read as text whatever they look like: ids such as "00042" must not become 42
    csv_string_columns: tuple[str, ...] = ()

    def files(self) -> list[Path]:
        """The data files, sorted; each one checked to open (a named error otherwise)."""
        root = Path(self.path).expanduser()
        if root.is_dir():
            found = folder_files(root)
        else:
            found = [Path(p) for p in glob.glob(str(root), recursive=True)]
            found = [p for p in found if not p.is_dir()]  # broken links too: named below
            refuse_repeats(found, self.path)
        if not found:
            raise EventSchemaError(
                f"no event files at {self.path!r}: give a Parquet/CSV file, a directory or a glob"
            )
        for path in found:
            check_readable(path)
        return sorted(found)

    def _format(self, files: list[Path]) -> str:
        if self.format != "auto":
            return self.format
        suffixes = {p.suffix for p in files}
        if suffixes == {".csv"}:
            return "csv"
        if suffixes <= {".parquet", ".pq"}:
            return "parquet"
        if len(suffixes) == 1:
            raise EventSchemaError(
                f"{self.path!r} holds {sorted(suffixes)[0]!r} files, neither .parquet nor .csv; "
                "set format: parquet or csv"
            )
        raise EventSchemaError(
            f"{self.path!r} mixes file types {sorted(suffixes)}; set format: parquet or csv"
        )

    def scan(self) -> pl.LazyFrame:
        """Lazy frame over every file; empty CSV files and unreadable Parquet footers (a
        truncated copy, a file that is not Parquet) are refused here, naming the file."""
        files = self.files()
        if self._format(files) == "csv":
            empty = [f for f in files if f.stat().st_size == 0]
            if empty:
                more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
                raise EventSchemaError(
                    f"CSV file {str(empty[0])!r}{more} is empty (0 bytes, not even a header "
                    "row): re-export it or remove it from the input"
                )
            return pl.scan_csv(
                files,
                separator=self.csv_separator,
                infer_schema_length=10_000,
                has_header=True,
                schema_overrides=dict.fromkeys(self.csv_string_columns, pl.String) or None,
            )
        for file in files:
            check_parquet_file(file)
        root = Path(self.path).expanduser()
        if not root.is_dir():
            return pl.scan_parquet(
                [str(f) for f in files], hive_partitioning=self.hive_partitioning
            )
        # the listed files, not the folder: Polars would read a README.txt or loop on a link
        below = {p.split("=")[0] for f in files for p in f.relative_to(root).parts[:-1] if "=" in p}
        hive = bool(below) if self.hive_partitioning is None else self.hive_partitioning
        frame = pl.scan_parquet([str(f) for f in files], hive_partitioning=hive)
        # with a list of files Polars also parses key=value folders *above* the root
        above = {p.split("=")[0] for p in root.parts if "=" in p} - below
        return frame.drop(sorted(above), strict=False) if hive and above else frame

    def describe(self) -> str:
        return self.path

    def fingerprint(self) -> dict[str, object]:
        """Path, settings and every file's size and mtime: a changed input invalidates caches."""
        files = self.files()
        return {
            "source": "files",
            "path": str(Path(self.path).expanduser().resolve()),
            "format": self.format,
            "hive_partitioning": self.hive_partitioning,
            "csv_separator": self.csv_separator,
            "csv_string_columns": list(self.csv_string_columns),
            "files": [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files],
        }


def check_parquet_file(path: Path) -> None:
    """Read the footer only (cheap): a truncated or non-Parquet file fails here, by name,
    instead of as a bare Polars error halfway through a scan."""
    try:
        pl.read_parquet_schema(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise EventSchemaError(
            f"cannot read Parquet file {str(path)!r}: {first_line(exc)}. It is truncated or not "
            "Parquet (an interrupted copy or export?): re-export it or remove it from the input"
        ) from exc


def text_user_ids(source: Any, mapping: ColumnMapping) -> Any:
    """``source`` with the user-id column read as text when it is a CSV `FileEventSource`:
    otherwise ids "00042" and "42" would both become 42 (two users merged, and an opt-out
    list, read as text, would miss them)."""
    if isinstance(source, FileEventSource) and mapping.user_id not in source.csv_string_columns:
        return replace(source, csv_string_columns=(*source.csv_string_columns, mapping.user_id))
    return source


@dataclass(frozen=True)
class IngestConfig:
    """Row filters and limits applied on ingest; every one of them is counted in the report.

    ``max_drop_fraction``: more dropped rows than this share is an error, not a warning,
    because it usually means a wrong column mapping or a broken export.
    """

    start: str | None = None  # ISO date/time; earlier rows are dropped (out_of_date_range)
    end: str | None = None  # ISO date/time, exclusive
    drop_duplicates: bool = True  # exact duplicate events (every mapped column equal)
    opt_out_path: str | None = None  # Parquet/CSV listing opted-out users (the user_id column)
    # a listed user missing from the table is a warning (ids written differently?); true: error
    opt_out_must_match: bool = False
    max_drop_fraction: float = 0.05
    salt_env: str = "ENGAGE_SEQ_SALT"


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


def salt_fingerprint(config: IngestConfig) -> str:
    """Identifies the salt in use (for cache keys) without revealing it."""
    salt = os.environ.get(config.salt_env, "")
    if not salt:
        return "none"
    return hmac.new(salt.encode(), b"engage_seq cache key", hashlib.sha256).hexdigest()[:16]


def _hmac_keys(user_ids: pl.Series, salt: bytes) -> pl.Series:
    """HMAC-SHA256 of each *distinct* user id, first 8 bytes as UInt64.

    Runs once per user, not per event: 100M events of 2M users cost 2M hashes (~3 s).
    """
    keys = np.fromiter(
        (
            int.from_bytes(hmac.new(salt, uid.encode(), hashlib.sha256).digest()[:8], "little")
            for uid in user_ids.to_list()
        ),
        dtype=np.uint64,
        count=len(user_ids),
    )
    return pl.Series("user_key", keys, dtype=pl.UInt64)


def user_keys(user_ids: pl.Series, salt_env: str = "ENGAGE_SEQ_SALT") -> pl.Series:
    """The ``user_key`` that `validate_events` gives each id (same order, UInt64): HMAC with
    the salt in ``$salt_env`` when set, else the unkeyed hash of `schema.to_canonical`. For
    code that must join raw ids (the synthetic oracle's truth) to samples without keeping
    the ids; ids are read as text, as ingest reads them. One HMAC per element (~1.5 µs), so
    pass distinct ids where many rows share one. Ids are normalised as ingest does
    (`schema.user_id_text`); nulls, blanks and NaN are refused (ingest drops them).
    """
    if user_ids.null_count():
        raise ValueError(
            f"user ids hold {user_ids.null_count()} null(s); ingest drops null users, so they "
            "have no key: filter them out first"
        )
    ids = user_ids.to_frame("id").select(user_id_text("id", user_ids.dtype)).to_series()
    if ids.null_count():
        raise ValueError(
            f"user ids hold {ids.null_count()} blank or NaN value(s); ingest counts them as "
            "null_user, so they have no key: filter them out first"
        )
    salt = os.environ.get(salt_env, "")
    if not salt:
        return ids.hash(seed=USER_KEY_SEED).alias("user_key")
    return _hmac_keys(ids, salt.encode())


def read_id_list(path: str, mapping: ColumnMapping, what: str = "opt-out list") -> pl.LazyFrame:
    """A list of user ids (Parquet/CSV): the event table's user-id column, or a file's only
    column, as distinct ``user_id`` text normalised like the table's (`schema.user_id_text`:
    a float 7.0 -> "7", whitespace trimmed, a CSV id "00042" stays "00042"), so they match.
    A CSV whose header looks like an id (no header row: the first id would be lost) is an
    error naming the file."""
    if not Path(path).expanduser().exists() and not glob.glob(path):
        raise EventSchemaError(f"{what} {path!r} does not exist")
    head = FileEventSource(path).scan()
    names = head.collect_schema().names()
    if mapping.user_id in names:
        column = mapping.user_id
    elif len(names) == 1 and not header_looks_like_data(names, first_row(head)):
        column = names[0]  # a bare list of ids
    elif len(names) == 1:
        raise EventSchemaError(
            f"the first row of {what} {path!r} looks like an id, not a header (value not "
            f"shown): add a header row naming the column ({mapping.user_id!r}), or the first "
            "id would be read as the column name and never matched"
        )
    else:
        raise EventSchemaError(
            f"{what} {path!r} has no column {mapping.user_id!r} "
            f"({describe_columns(names, repr(path), head, 'columns')}); name the user-id "
            "column like the event table's, or keep a single column"
        )
    frame = FileEventSource(path, csv_string_columns=(column,)).scan()
    dtype = frame.collect_schema()[column]
    ids = frame.select(user_id_text(column, dtype).alias("user_id"), pl.lit(False).alias(HEADER))
    if column != mapping.user_id:
        # A bare list may have no header row at all, its first id read as the column name
        # (plain ids like "alice" do not look like data). The name is kept as a candidate id,
        # so such a user is still excluded; `listed_count` counts it only where it matched.
        ids = pl.concat([ids, pl.LazyFrame({"user_id": [column.strip()], HEADER: [True]})])
    return ids.drop_nulls().group_by("user_id").agg(pl.col(HEADER).all())


HEADER = "_from_header"  # read_id_list: the id is the bare list's column name


def listed_count(listed: pl.DataFrame, matched_ids: pl.Series, what: str, path: str) -> int:
    """Users a `read_id_list` list holds: its ids, plus its column name where that name is an
    id of the table (the file had no header row; warned, never naming the id)."""
    header_ids = listed.filter(pl.col(HEADER))["user_id"]
    header_matched = int(header_ids.is_in(matched_ids.implode()).sum())
    if header_matched:
        log.warning(
            "%s %r: its column name is a user id of the table, so the file seems to have no "
            "header row; that user was excluded too. Add a header row naming the column",
            what,
            path,
        )
    return listed.height - header_ids.len() + header_matched


def check_list_matches(
    what: str, path: str, listed: int, matched: int, where: str, must_match: bool
) -> None:
    """Warn (or, with ``must_match``, refuse) when an id list matches nobody in ``where`` or
    only part of it: a list written in another id format (a float export, another system's
    ids) would otherwise let listed users through unnoticed. Names the file and the counts,
    never an id."""
    if listed and matched == listed:
        return
    if listed == 0:
        problem = "lists no user"
    elif matched == 0:
        problem = (
            f"matches none of its {listed} users in {where}: check that it holds the same ids, "
            "written the same way, as the table's user-id column"
        )
    else:
        problem = (
            f"matches {matched} of its {listed} users in {where}; the other {listed - matched} "
            "are not in this table (other ids, or another id format?)"
        )
    if must_match:
        raise EventSchemaError(
            f"{what} {path!r} {problem}. data.ingest.opt_out_must_match is true: fix the list "
            "or the table, or set it to false to accept this"
        )
    log.warning("%s %r %s", what, path, problem)


def _opt_out_ids(config: IngestConfig, mapping: ColumnMapping) -> pl.DataFrame | None:
    """The distinct normalised ids of ``config.opt_out_path`` (None without one)."""
    if not config.opt_out_path:
        return None
    try:
        return read_id_list(config.opt_out_path, mapping).collect()
    except pl.exceptions.PolarsError as exc:
        raise read_error(f"opt-out list {config.opt_out_path!r}", exc) from exc


def check_opt_out(opt_out: dict[str, int] | None, config: IngestConfig, where: str) -> None:
    """`check_list_matches` for the opt-out list of a whole table's report (a shard's report
    is partial: the caller checks the merged one)."""
    if opt_out is not None and config.opt_out_path:
        check_list_matches(
            "opt-out list",
            config.opt_out_path,
            opt_out["users_listed"],
            opt_out["users_matched"],
            where,
            config.opt_out_must_match,
        )


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
    canonical = to_canonical(raw, mapping, where)
    listed = _opt_out_ids(config, mapping)
    if listed is not None:
        canonical = canonical.join(
            listed.lazy().select("user_id", pl.lit(True).alias("_listed")),
            on="user_id",
            how="left",
            maintain_order="left",
        ).with_columns(
            pl.col("_listed").fill_null(False),
            (pl.col("consent_opt_out") | pl.col("_listed").fill_null(False)).alias(
                "consent_opt_out"
            ),
        )
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
    canonical = canonical.with_columns(
        (pl.col("ts").is_not_null() & ~in_range).alias("out_of_date_range"),
        duplicate.alias("duplicate_event"),
    ).with_columns(
        pl.coalesce([pl.when(pl.col(r)).then(pl.lit(r)) for r in DROP_REASONS]).alias("drop_reason")
    )
    try:  # one scan of the input: everything after this works on the collected frame
        flagged = canonical.collect()
    except pl.exceptions.PolarsError as exc:
        raise read_error(where, exc) from exc
    counts = flagged.group_by("drop_reason").len()
    kept_frame = flagged.filter(pl.col("drop_reason").is_null())
    stats = kept_frame.select(
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
    dst_nonexistent = flagged.select(
        (pl.col(DST_NONEXISTENT) & (pl.col("drop_reason") == "unparseable_timestamp")).sum()
    ).item()
    opt_out = None
    if listed is not None:
        matched_ids = flagged.filter(pl.col("_listed"))["user_id"].unique()
        users_listed = listed_count(listed, matched_ids, "opt-out list", str(config.opt_out_path))
        opt_out = {"users_listed": users_listed, "users_matched": matched_ids.len()}
    kept = kept_frame.lazy()
    canonical = flagged.lazy()
    by_reason = {r: 0 for r in DROP_REASONS}
    rows_kept = 0
    for reason, n in counts.iter_rows():
        if reason is None:
            rows_kept = n
        else:
            by_reason[reason] = n
    rows_read = rows_kept + sum(by_reason.values())
    if not partial:
        check_drops(
            by_reason, rows_kept, config, where, lambda r: _example(raw, canonical, r, mapping)
        )
        check_opt_out(opt_out, config, where)
    salt = os.environ.get(config.salt_env, "")
    if salt:
        users = kept.select("user_id").unique().collect()["user_id"]
        keys = pl.DataFrame({"user_id": users, "user_key": user_keys(users, config.salt_env)})
        kept = kept.drop("user_key").join(
            keys.lazy(), on="user_id", how="left", maintain_order="left"
        )
    ts_min, ts_max = stats["ts_min"].item(), stats["ts_max"].item()
    report = {
        "source": where,
        "rows_read": rows_read,
        "rows_kept": rows_kept,
        "rows_dropped": by_reason,
        "users": stats["users"].item(),
        "event_types": stats["event_types"].item().to_list(),
        "time_span": [
            format_instant(ts_min) if ts_min is not None else None,
            format_instant(ts_max) if ts_max is not None else None,
        ],
        "user_keys": "hmac-sha256" if salt else "unkeyed-hash",
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
    columns = [ROW_INDEX, "user_key", *(["user_id"] if keep_user_id else []), "ts"]
    columns += ["event_type", "channel"]
    columns += [c for c in kept.collect_schema().names() if c.startswith(("cat_", "num_"))]
    return ValidatedEvents(kept.select(columns), report, ts_min, ts_max)
