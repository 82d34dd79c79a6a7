"""One side of a drift comparison, read: raw event tables (validated into canonical events with
the artifact's column mapping or the default one, raw ids dropped) or sample Parquet files
written by the builder (recognised by their ``split``, ``cutoff`` and list columns), cut to a
window of time. Polars only: reading needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from engage_seq.common.messages import describe_columns
from engage_seq.common.times import format_instant
from engage_seq.data.ingest import FileEventSource, IngestConfig
from engage_seq.data.schema import ColumnMapping, EventSchemaError, read_error
from engage_seq.data.validation import validate_events
from engage_seq.monitoring.errors import DriftError
from engage_seq.serving.contract import ArtifactMetadata  # standard library only: no torch

SAMPLE_COLUMNS = ("split", "cutoff", "n_history")
COLUMN_HINT = (
    "Name your table's columns with --user-id/--timestamp/--event-type/--channel ('' for "
    "none), list only existing attributes in --categorical/--numeric, or pass --artifact to "
    "read the table with the run's column mapping."
)
ARTIFACT_COLUMN_HINT = (
    "The artifact's column mapping names these columns; override a name with --user-id/"
    "--timestamp/--event-type/--channel ('' for none)."
)


@dataclass
class DriftInput:
    """One side of the comparison: canonical events or samples, plus its size for the report.

    ``history`` (events only) holds every event before the window's end: scores need the
    whole past, the feature histograms only the window (``frame``).
    """

    kind: str  # "events" or "samples"
    where: str
    frame: pl.DataFrame
    history: pl.DataFrame | None
    summary: dict[str, Any]


@dataclass(frozen=True)
class Window:
    start: int | None = None  # epoch seconds, inclusive
    end: int | None = None  # exclusive

    def mask(self, column: str) -> pl.Expr:
        keep = pl.lit(True)
        if self.start is not None:
            keep = keep & (pl.col(column) >= self.start)
        if self.end is not None:
            keep = keep & (pl.col(column) < self.end)
        return keep


@dataclass(frozen=True)
class ColumnOverrides:
    """Column names given on top of the artifact's (or the default) mapping; None keeps the
    mapping's name, an ``event_type`` or ``channel`` of '' means the table has none (no event
    type: every row is the mapping's ``constant_event_type``). ``categorical`` and ``numeric``
    add attributes the mapping does not list yet."""

    user_id: str | None = None
    timestamp: str | None = None
    event_type: str | None = None
    channel: str | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()


def column_mapping(overrides: ColumnOverrides, meta: ArtifactMetadata | None) -> ColumnMapping:
    """The artifact's column mapping (the default one without an artifact), with
    ``overrides`` applied."""
    if meta is not None:
        from engage_seq.serving.scoring import column_mapping as artifact_mapping

        mapping = artifact_mapping(meta)
    else:
        mapping = ColumnMapping()
    changes: dict[str, Any] = {
        k: v
        for k, v in {"user_id": overrides.user_id, "timestamp": overrides.timestamp}.items()
        if v
    }
    # '' = the table has no such column (no event type: every row is constant_event_type)
    for role in ("event_type", "channel"):
        if getattr(overrides, role) is not None:
            changes[role] = getattr(overrides, role) or None
    extra_cat = [c for c in overrides.categorical if c not in mapping.categorical]
    extra_num = [c for c in overrides.numeric if c not in mapping.numeric]
    changes["categorical"] = (*mapping.categorical, *extra_cat)
    changes["numeric"] = (*mapping.numeric, *extra_num)
    try:
        return replace(mapping, **changes)
    except ValueError as exc:
        raise DriftError(str(exc)) from None


def ingest_settings(meta: ArtifactMetadata | None, max_drop_fraction: float | None) -> IngestConfig:
    """The artifact's ingest rules (the defaults without one); ``max_drop_fraction`` replaces
    their drop limit when given (0 is a limit too: no row may be dropped)."""
    if meta is not None:
        from engage_seq.serving.scoring import ingest_config

        return ingest_config(meta, max_drop_fraction=max_drop_fraction)
    given = max_drop_fraction is not None
    return IngestConfig(**({"max_drop_fraction": max_drop_fraction} if given else {}))


def detect_kind(path: str) -> str:
    """``samples`` when the file has the builder's columns (split, cutoff, list columns)."""
    try:
        schema = FileEventSource(path).scan().collect_schema()
    except EventSchemaError as exc:
        raise DriftError(str(exc)) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DriftError(str(read_error(path, exc))) from None
    is_list = isinstance(schema.get("event_type"), pl.List)
    if all(c in schema for c in SAMPLE_COLUMNS) and is_list:
        return "samples"
    return "events"


def check_event_columns(source: FileEventSource, mapping: ColumnMapping, hint: str) -> None:
    """Name every mapped column the table lacks, with the fix for this command (the ingest
    layer's message points at the training config, which engage-drift does not read)."""
    try:
        frame = source.scan()
        schema = frame.collect_schema()
    except EventSchemaError as exc:
        raise DriftError(str(exc)) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DriftError(str(read_error(source.describe(), exc))) from None
    missing = {role: col for role, col in mapping.required().items() if col not in schema}
    if missing:
        wanted = ", ".join(f"{role} -> {col!r}" for role, col in missing.items())
        where = source.describe()
        available = describe_columns(schema.names(), where, frame)  # never a headerless row
        raise DriftError(f"{where} lacks column(s): {wanted}. {available} {hint}")


def read_input(
    path: str,
    mapping: ColumnMapping,
    ingest: IngestConfig,
    window: Window,
    split: str | None = None,
    column_hint: str = COLUMN_HINT,
) -> DriftInput:
    """Read one side: validated canonical events (raw ids dropped) or samples. ``column_hint``
    ends the error for a table that lacks a mapped column (how to fix the mapping)."""
    if detect_kind(path) == "samples":
        return _read_samples(path, window, split)
    if split is not None:
        raise DriftError(f"{path} is an event table; a split filter only applies to sample files")
    return _read_events(path, mapping, ingest, window, column_hint)


def _read_samples(path: str, window: Window, split: str | None) -> DriftInput:
    frame = pl.scan_parquet(FileEventSource(path).files())
    if split is not None:
        frame = frame.filter(pl.col("split") == split)
    frame = frame.filter(window.mask("cutoff")).collect()
    if frame.is_empty():
        raise DriftError(f"{path}: no samples left (split {split!r}, window {window_text(window)})")
    summary = {
        "kind": "samples",
        "path": path,
        "samples": frame.height,
        "users": frame["user_key"].n_unique(),
        "cutoffs": _span(frame, "cutoff"),
        "split": split,
    }
    return DriftInput("samples", path, frame, None, summary)


def _read_events(
    path: str, mapping: ColumnMapping, ingest: IngestConfig, window: Window, column_hint: str
) -> DriftInput:
    source = FileEventSource(path, csv_string_columns=(mapping.user_id,))
    check_event_columns(source, mapping, column_hint)
    try:
        validated = validate_events(source.scan(), mapping, ingest, where=source.describe())
        events = validated.events.collect()
    except EventSchemaError as exc:
        raise DriftError(str(exc)) from None
    history = events.filter(pl.col("ts") < window.end) if window.end is not None else events
    frame = history.filter(window.mask("ts"))
    if frame.is_empty():
        raise DriftError(f"{path}: no events in the window {window_text(window)}")
    summary = {
        "kind": "events",
        "path": path,
        "rows_read": validated.report["rows_read"],
        "rows_kept": validated.report["rows_kept"],
        "rows_dropped": validated.report["rows_dropped"],  # per reason
        "numeric_missing": validated.report["numeric_missing"],  # kept, scaled as missing
        "categorical_missing": validated.report["categorical_missing"],  # kept, as "none"
        "events": frame.height,
        "users": frame["user_key"].n_unique(),
        "time_span": _span(frame, "ts"),
        "window": window_text(window),
    }
    return DriftInput("events", path, frame, history, summary)


def _span(frame: pl.DataFrame, column: str) -> list[str]:
    """The first and last instant of ``column`` (epoch seconds) as ISO text."""
    return [format_instant(int(frame[column].min())), format_instant(int(frame[column].max()))]


def window_text(window: Window) -> str:
    """'[2026-01-05T00:00:00+00:00, end)': a window as the messages and drift.md show it."""
    start = format_instant(window.start) if window.start is not None else "start"
    end = format_instant(window.end) if window.end is not None else "end"
    return f"[{start}, {end})"
