"""Reading a raw event table for scoring exactly as the training run read its own.

The artifact's metadata says how (`engage_seq.serving.contract`): the column mapping, the
ingest rules (duplicates, drop limit, salt variable) and, through the encoder, the
vocabularies. Validation is the training code's (`engage_seq.data.ingest`); this module adds
the scoring job's own choices: the cutoff, the suppression list, and the optional split of a
table too large for memory into user shards. Polars only; no torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq.common.errors import EngageSeqError
from engage_seq.common.times import parse_instant_arg
from engage_seq.data.build import merge_ingest_reports, split_by_user
from engage_seq.data.id_lists import check_opt_out, read_id_list
from engage_seq.data.ingest import FileEventSource, IngestConfig
from engage_seq.data.schema import ColumnMapping, EventSchemaError, check_columns, read_error
from engage_seq.data.validation import check_drops, validate_events
from engage_seq.serving.contract import ArtifactMetadata
from engage_seq.serving.cutoff import check_cutoff_range


class ScoringError(EngageSeqError, ValueError):
    """Bad input for engage-score; the message says what to change. Nothing was written."""


_INGEST_RULES = (
    "drop_duplicates",
    "max_drop_fraction",
    "salt_env",
    "opt_out_must_match",
    "merge_same_instant",  # line items merged in training are merged for scoring too
)


def column_mapping(meta: ArtifactMetadata) -> ColumnMapping:
    """How the training table's columns were mapped (older artifacts: defaults plus the
    attribute names the model was trained on)."""
    if meta.column_mapping:
        return ColumnMapping(**meta.column_mapping)
    return ColumnMapping(
        categorical=tuple(c.removeprefix("cat_") for c in meta.categorical_attributes),
        numeric=tuple(c.removeprefix("num_") for c in meta.numeric_attributes),
    )


def ingest_config(meta: ArtifactMetadata, **overrides: Any) -> IngestConfig:
    """The training run's ingest rules (duplicates, drop limit, salt variable, line-item
    merge), so a table is read for scoring as it was for training; date filters and opt-out
    files are the scoring job's own (``--opt-out``)."""
    recorded = meta.recorded_config("data", "ingest")
    kept = {k: recorded[k] for k in _INGEST_RULES if k in recorded}
    return IngestConfig(**{**kept, **{k: v for k, v in overrides.items() if v is not None}})


def parse_cutoff(value: str | None, ts_max: int | None) -> int:
    """An ISO date/time or epoch seconds; default: one second after the latest event kept
    (rows beyond the far-future limit are dropped first: `engage_seq.serving.cutoff`), so
    every event in the table counts."""
    if value is None:
        if ts_max is None:
            raise ScoringError("the event table has no usable events")
        return int(ts_max) + 1
    at = parse_instant_arg(value, "--cutoff", ScoringError)
    assert at is not None
    check_cutoff_range(at, ScoringError)
    return at


def read_suppression_list(path: str, mapping: ColumnMapping) -> pl.DataFrame:
    """The do-not-contact list's user ids (raw, as listed)."""
    try:
        return read_id_list(path, mapping, "suppression list").collect()
    except pl.exceptions.PolarsError as exc:
        raise read_error(f"suppression list {path!r}", exc) from exc


def validated_parts(
    source: FileEventSource,
    mapping: ColumnMapping,
    config: IngestConfig,
    work: Path | None,
    shards: int = 1,
) -> tuple[list[pl.LazyFrame], dict[str, Any], int | None]:
    """(clean canonical events per user shard, the merged validation report, latest time).

    Without a ``work`` folder the table is validated as a whole, as training does. With one,
    a streaming pass splits the raw rows by user into ``shards`` parts there
    (`split_by_user`), each part is validated and written back clean, and the drop limit is
    checked on the merged counts (its error then shows no example value): memory holds one
    part at a time, and every user is in exactly one part. The frames read files in ``work``:
    use them before it goes (`shard_workspace`).
    """
    where = source.describe()
    if work is None:
        validated = validate_events(source.scan(), mapping, config, where=where, keep_user_id=True)
        return [validated.events], validated.report, validated.ts_max
    raw = source.scan()
    check_columns(raw.collect_schema(), mapping, where, raw)
    folders = split_by_user(raw, mapping, shards, work / "raw", where)
    if not folders:
        raise EventSchemaError(f"{where} is empty: no rows to score")
    parts, reports, ts_max = [], [], None
    for shard, folder in folders:
        label = f"{where} (shard {shard + 1}/{shards})"
        validated = validate_events(
            pl.scan_parquet(folder), mapping, config, label, keep_user_id=True, partial=True
        )
        path = work / f"clean-{shard:05d}.parquet"
        validated.events.sink_parquet(path, compression="lz4")
        shutil.rmtree(folder)
        reports.append(validated.report)
        parts.append(pl.scan_parquet(path))
        if validated.ts_max is not None:
            ts_max = validated.ts_max if ts_max is None else max(ts_max, validated.ts_max)
    report = merge_ingest_reports(reports, where)
    check_drops(report["rows_dropped"], report["rows_kept"], config, where)
    check_opt_out(report["opt_out"], config, where)
    return parts, report, ts_max
