"""User-id lists read next to an event table (the opt-out list): read, matched, checked.

A list must match the table's ids as ingest normalises them (`schema.user_id_text`), or listed
users would slip through unnoticed; so every mismatch is warned about (or refused), naming
the file and the counts, never an id.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import polars as pl

from engage_seq.common.messages import describe_columns, first_row, header_looks_like_data
from engage_seq.data.ingest import FileEventSource, IngestConfig
from engage_seq.data.schema import ColumnMapping, EventSchemaError, read_error, user_id_text

log = logging.getLogger(__name__)
HEADER = "_from_header"  # read_id_list: the id is the bare list's column name


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


def read_opt_out_ids(config: IngestConfig, mapping: ColumnMapping) -> pl.DataFrame | None:
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
