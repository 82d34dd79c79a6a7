"""Out-of-core building blocks: raw rows split into user-hash shards, shard reports merged.

Every user's events land in exactly one shard, so every per-user step (validation with
duplicates and consent, keys, histories, samples) runs on one shard at a time, and only
additive counts cross shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from engage_seq.data.schema import (
    DROP_REASONS,
    USER_KEY_SEED,
    ColumnMapping,
    read_error,
    user_id_text,
)


def split_by_user(
    raw: pl.LazyFrame, mapping: ColumnMapping, shards: int, folder: Path, where: str
) -> list[tuple[int, Path]]:
    """One streaming pass writing the raw rows into ``shards`` folders by a hash of the user
    id, so every user's events land in exactly one (rows without a user go to shard 0).
    Returns (shard number, folder) for the shards that received rows, in shard order; the
    folders hold raw ids: the caller deletes them. A table Polars cannot read is an
    `EventSchemaError` naming ``where``, as for an in-memory read."""
    # the id as ingest normalises it: " 7" and 7.0 are user "7", so they share a shard
    user = user_id_text(mapping.user_id, raw.collect_schema()[mapping.user_id])
    shard_of = (user.hash(seed=USER_KEY_SEED) % shards).fill_null(0)
    try:
        raw.with_columns(shard_of.alias("_shard")).sink_parquet(
            pl.PartitionBy(folder, key="_shard", include_key=False), mkdir=True, engine="streaming"
        )
    except pl.exceptions.PolarsError as exc:
        raise read_error(where, exc) from exc
    if not folder.is_dir():
        return []
    # folders are named _shard=<k>
    found = [(int(p.name.rpartition("=")[2]), p) for p in folder.iterdir() if p.is_dir()]
    return sorted(found)


def merge_ingest_reports(reports: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """One validation report for shards validated separately (users are disjoint)."""
    dropped = {r: sum(rep["rows_dropped"][r] for rep in reports) for r in DROP_REASONS}
    starts = [rep["time_span"][0] for rep in reports if rep["time_span"][0]]
    ends = [rep["time_span"][1] for rep in reports if rep["time_span"][1]]
    return {
        "source": where,
        "rows_read": sum(rep["rows_read"] for rep in reports),
        "rows_kept": sum(rep["rows_kept"] for rep in reports),
        "rows_dropped": dropped,
        "users": sum(rep["users"] for rep in reports),
        "event_types": sorted({t for rep in reports for t in rep["event_types"]}),
        "time_span": [min(starts, default=None), max(ends, default=None)],
        "user_keys": reports[0]["user_keys"],
        "numeric_missing": {
            c: sum(rep["numeric_missing"][c] for rep in reports)
            for c in reports[0]["numeric_missing"]
        },
        "categorical_missing": {
            c: sum(rep["categorical_missing"][c] for rep in reports)
            for c in reports[0]["categorical_missing"]
        },
        "timestamp_dst": {
            k: sum(rep["timestamp_dst"][k] for rep in reports) for k in reports[0]["timestamp_dst"]
        },
        "rows_merged_same_instant": sum(rep["rows_merged_same_instant"] for rep in reports),
        "opt_out": None  # every shard read the whole list; its users are in one shard each
        if reports[0]["opt_out"] is None
        else {
            "users_listed": reports[0]["opt_out"]["users_listed"],
            "users_matched": sum(rep["opt_out"]["users_matched"] for rep in reports),
        },
    }
