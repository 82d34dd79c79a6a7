"""Read event files lazily, with the ingest settings and the pseudonymous user keys.

`FileEventSource` scans Parquet (file, directory, glob, hive-partitioned folders) or CSV.
`IngestConfig` holds the row filters and limits that `validation.validate_events` applies
(every dropped row counted); `user_keys` is how it turns user ids into keys.

Privacy: with a salt in the environment variable ``salt_env`` (never in a config file), user
keys are HMAC-SHA256(salt, user_id) truncated to 64 bits; without one they are an unkeyed
64-bit hash. Either way the raw id column is dropped before anything is built or written, and
no error message or report ever shows a user id.
"""

from __future__ import annotations

import glob
import hashlib
import hmac
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engage_seq.data.listing import check_readable, folder_files, refuse_repeats
from engage_seq.data.schema import (
    USER_KEY_SEED,
    ColumnMapping,
    EventSchemaError,
    first_line,
    user_id_text,
)


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
    # line-item logs: rows of one user at the same instant with the same event type become one
    # event (numerics summed, channel and categoricals of the first row), counted in the report
    merge_same_instant: bool = False


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
    """The ``user_key`` that `validation.validate_events` gives each id (same order,
    UInt64): HMAC with the salt in ``$salt_env`` when set, else the unkeyed hash of
    `schema.to_canonical`. For
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
