"""Batch scoring: an exported artifact + a raw event table -> ``scores.parquet``.

No Lightning, no Hydra, no model classes: the artifact is loaded with ``torch.jit.load`` and
its metadata (`engage_seq.serving.contract`) says how to read the table (column mapping),
encode it (vocabularies, scaling, ``max_len``) and name the outputs. Events are validated and
encoded in Polars by the same functions that built the training samples
(`engage_seq.serving.event_table`), then scored in length-sorted batches through the
artifact's tensor entry point (the raw entry point computes the same inputs per user, which
the export's parity harness checks; batching them in Polars is what makes a million users
fast). The console script (``engage-score``) is `engage_seq.cli.score`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from engage_seq.common.times import format_instant
from engage_seq.data.encoding import (
    Vocabulary,
    encode_events_at_cutoff,
    ordered_numeric_scaling,
)
from engage_seq.data.id_lists import check_list_matches, listed_count
from engage_seq.data.ingest import FileEventSource, IngestConfig
from engage_seq.data.schema import ColumnMapping, EventSchemaError
from engage_seq.serving.aggregate_metadata import served_aggregates
from engage_seq.serving.contract import ArtifactMetadata
from engage_seq.serving.cutoff import explain_drop_error, far_future_limit, warn_far_future
from engage_seq.serving.event_table import (
    column_mapping,
    ingest_config,
    parse_cutoff,
    read_suppression_list,
    validated_parts,
)
from engage_seq.serving.outputs import (
    Writer,
    remove_leftovers,
    report_path,
    shard_workspace,
    write_outputs,
)
from engage_seq.serving.ranking import parse_top, rank_columns, top_list
from engage_seq.serving.scoring_artifact import (
    SUPPORTED_FORMATS,
    ScoringError,
    open_scoring_artifact,
)

__all__ = [  # engage-drift and engage-backtest import the reading steps from here too
    "SUPPORTED_FORMATS",
    "ScoreOptions",
    "ScoringError",
    "column_mapping",
    "ingest_config",
    "open_scoring_artifact",
    "parse_cutoff",
    "parse_top",
    "predict_in_batches",
    "rank_columns",
    "score_events",
    "validated_parts",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreOptions:
    """What engage-score's flags choose (same names, same defaults).

    ``allow_unverified``, ``require_signed``: see `open_scoring_artifact`; ``shards > 1``
    scores the users in that many hash-split parts, one in memory at a time
    (`validated_parts`), for tables that do not fit; the scores are the same."""

    cutoff: str | None = None  # ISO time or epoch seconds; None: just after the latest event
    suppress: str | None = None  # do-not-contact list: scored, flagged, never in the top list
    top: str | None = None  # "1000" or "5%"
    top_out: str | Path | None = None  # None: <out stem>_top<out suffix>
    rank_by: str | None = None  # None: the first horizon target
    batch_size: int = 4096
    ids: str = "raw"  # raw: the table's user ids; key: the pseudonymous user_key
    opt_out: str | None = None  # opt-out list: not scored
    max_drop_fraction: float | None = None  # None: the training run's
    allow_unverified: bool | None = None
    shards: int = 1
    require_signed: bool | None = None
    opt_out_must_match: bool | None = None

    def check(self) -> None:
        """Refuse malformed values before anything is read."""
        if self.batch_size < 1:
            raise ScoringError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.shards < 1:
            raise ScoringError(f"--shards must be at least 1, got {self.shards}")
        if self.ids not in ("raw", "key"):
            raise ScoringError(f"--ids must be 'raw' or 'key', got {self.ids!r}")

    @property
    def id_column(self) -> str:
        return "user_id" if self.ids == "raw" else "user_key"


@dataclass(frozen=True)
class _Plan:
    """The checked artifact and where everything goes, settled before the table is read."""

    module: Any
    meta: ArtifactMetadata
    mapping: ColumnMapping
    rank_target: str | None
    out: Path
    top_path: Path
    limit: int  # far-future limit (epoch seconds): rows at or after it are dropped


@dataclass(frozen=True)
class _Table:
    """The event table, validated (still on disk, one lazy frame per user shard)."""

    source: FileEventSource
    config: IngestConfig
    parts: list[pl.LazyFrame]
    report: dict[str, Any]  # the merged ingest report
    listed: pl.DataFrame | None  # the suppression list
    far_future: dict[str, Any] | None
    at: int  # the cutoff, epoch seconds


def _plan(artifact: str | Path, out: str | Path, options: ScoreOptions) -> _Plan:
    module, meta = open_scoring_artifact(artifact, options.allow_unverified, options.require_signed)
    targets = meta.targets
    if options.rank_by is not None and options.rank_by not in targets:
        raise ScoringError(f"--rank-by must be one of the artifact's targets {targets}")
    if options.top is not None and not targets:
        raise ScoringError("--top ranks by a horizon target; this artifact has none")
    parse_top(options.top, 1)  # a malformed --top fails now, not after reading the table
    out = Path(out)
    top_path = (
        Path(options.top_out) if options.top_out else out.with_name(f"{out.stem}_top{out.suffix}")
    )
    for path in (out, top_path) if options.top else (out,):
        if path.parent.exists() and not path.parent.is_dir():
            raise ScoringError(f"cannot write {path}: {path.parent} is not a folder")
    if options.top and top_path.resolve() in (out.resolve(), report_path(out).resolve()):
        raise ScoringError(f"--top-out {top_path} would overwrite the scores or their report")
    cutoff = options.cutoff
    limit = far_future_limit(parse_cutoff(cutoff, None) if cutoff is not None else None)
    rank_target = options.rank_by or (targets[0] if targets else None)
    return _Plan(module, meta, column_mapping(meta), rank_target, out, top_path, limit)


def _read_table(
    plan: _Plan, source: FileEventSource, options: ScoreOptions, work: Path | None
) -> _Table:
    """Validate the table (per shard in ``work``), read the suppression list, warn about
    far-future rows and settle the cutoff; schema errors become `ScoringError`."""
    mapping, limit = plan.mapping, plan.limit
    try:
        config = ingest_config(
            plan.meta,
            opt_out_path=options.opt_out,
            max_drop_fraction=options.max_drop_fraction,
            opt_out_must_match=options.opt_out_must_match,
            end=format_instant(limit),  # far-future rows: out_of_date_range
        )
        parts, report, ts_max = validated_parts(source, mapping, config, work, options.shards)
        suppress = options.suppress
        listed = read_suppression_list(suppress, mapping) if suppress else None
    except EventSchemaError as exc:
        message = explain_drop_error(str(exc), source.scan, mapping, limit, source.describe())
        raise ScoringError(message) from None
    far_future = warn_far_future(
        source.scan(), mapping, limit, source.describe(),
        report["rows_dropped"]["out_of_date_range"],
    )  # fmt: skip
    at = parse_cutoff(options.cutoff, ts_max)
    return _Table(source, config, parts, report, listed, far_future, at)


def predict_in_batches(
    module: Any, encoded: Any, batch_size: int = 4096
) -> tuple[np.ndarray, float]:
    """Probabilities (N, n_outputs) in the encoded order; batches are length-sorted so little
    time goes to padding. Returns (probabilities, seconds spent in the model)."""
    n = len(encoded)
    order = np.argsort(encoded.lengths, kind="stable")
    outputs: list[np.ndarray] = []
    seconds = 0.0
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            inputs = encoded.batch(index)[:7]  # the model's inputs (MODEL_INPUTS), no labels
            began = time.perf_counter()
            outputs.append(module(*inputs).float().numpy())
            seconds += time.perf_counter() - began
    probabilities = np.empty((n, outputs[0].shape[1] if outputs else 0), dtype=np.float32)
    if outputs:
        probabilities[order] = np.concatenate(outputs)
    return probabilities, seconds


def _score_parts(
    plan: _Plan, table: _Table, batch_size: int
) -> tuple[list[pl.DataFrame], int, dict[str, float]]:
    """(per shard: user_key, user_id and score_<output> of every user with an event before
    the cutoff; users in the table; seconds spent encoding and in the model)."""
    meta = plan.meta
    vocabulary = Vocabulary.from_lists(meta.vocabulary, meta.categorical_attributes)
    scaling = ordered_numeric_scaling(meta.numeric_scaling, meta.numeric_attributes)
    aggregates = served_aggregates(meta)  # checked when the artifact was loaded
    frames, users_total, seconds = [], 0, {"encode": 0.0, "model": 0.0}
    for part in table.parts:  # one user shard in memory at a time
        began = time.perf_counter()
        canonical = part.collect()
        keys, encoded = encode_events_at_cutoff(
            canonical.lazy().drop("user_id"),
            table.at,
            vocabulary,
            scaling,
            int(meta.max_len),
            aggregates.targets,
            aggregates.scaling,
        )
        users_total += canonical["user_key"].n_unique()
        seconds["encode"] += time.perf_counter() - began
        if len(encoded) == 0:
            continue
        probabilities, model_seconds = predict_in_batches(plan.module, encoded, batch_size)
        seconds["model"] += model_seconds
        id_map = canonical.select("user_key", "user_id").unique("user_key")
        del canonical, encoded
        frame = pl.DataFrame({"user_key": keys}).with_columns(
            pl.Series(f"score_{name}", probabilities[:, i])
            for i, name in enumerate(meta.output_names)
        )
        frames.append(frame.join(id_map, on="user_key", how="left", maintain_order="left"))
    return frames, users_total, seconds


def _ranked(
    frames: list[pl.DataFrame], plan: _Plan, table: _Table, options: ScoreOptions
) -> tuple[pl.DataFrame, pl.Series]:
    """(the output table: id, scores, ranks, deciles, suppressed, sorted by the ranking
    target; the raw ids of the suppressed users, as listed)."""
    scores = pl.concat(frames)
    listed = table.listed
    suppressed_ids = listed["user_id"] if listed is not None else pl.Series([], dtype=pl.String)
    scores = scores.with_columns(
        pl.col("user_id").is_in(suppressed_ids.implode()).alias("suppressed")
    )
    matched_ids = scores.filter(pl.col("suppressed"))["user_id"]  # raw ids, as listed
    targets, id_column = plan.meta.targets, options.id_column
    scores = rank_columns(scores, targets, id_column)
    if plan.rank_target is not None:
        scores = scores.sort(f"rank_{plan.rank_target}")
    # the caller's own ids, to act on the scores (never logged); or the pseudonymous key
    ranked = [c for t in targets for c in (f"rank_{t}", f"decile_{t}")]
    score_columns = [f"score_{name}" for name in plan.meta.output_names]
    return scores.select(id_column, *score_columns, *ranked, "suppressed"), matched_ids


def _suppress_listed(
    table: _Table, options: ScoreOptions, matched_ids: pl.Series, suppressed: int
) -> int | None:
    """How many users the suppression list names (None without one); refuses a list whose
    users are not all scored where ``opt_out_must_match`` says so."""
    suppress = options.suppress
    if not suppress:
        return None
    try:  # listed users without an event before the cutoff are not scored: not matched
        listed = listed_count(table.listed, matched_ids, "suppression list", suppress)
        check_list_matches("suppression list", suppress, listed, suppressed,
                           "the scored users", table.config.opt_out_must_match)  # fmt: skip
    except EventSchemaError as exc:
        raise ScoringError(str(exc)) from None
    return listed


def _run_report(
    artifact: str | Path, table: _Table, scores: pl.DataFrame, users_total: int, **found: Any
) -> dict[str, Any]:
    """The run report (``<out>.report.json``) without its timings and files. ``found``:
    shards, users_suppressed, suppress_users_listed, top, outputs, id_column."""
    ingest = table.report
    return {
        "artifact": str(artifact),
        "events": table.source.describe(),
        "cutoff": format_instant(table.at),
        "rows_read": ingest["rows_read"],
        "rows_kept": ingest["rows_kept"],
        "rows_dropped": ingest["rows_dropped"],
        # line items merged into one event, as the run did (data.ingest.merge_same_instant)
        "rows_merged_same_instant": ingest["rows_merged_same_instant"],
        "numeric_missing": ingest["numeric_missing"],  # kept, scaled as missing
        "categorical_missing": ingest["categorical_missing"],  # kept, as "none"
        "far_future": table.far_future,  # rows at or after its limit: dropped (out_of_date_range)
        "shards": found["shards"],
        "users_in_table": users_total,
        "users_scored": scores.height,
        "users_without_events_before_cutoff": users_total - scores.height,
        "users_suppressed": found["users_suppressed"],
        "suppress_users_listed": found["suppress_users_listed"],
        "opt_out": ingest["opt_out"],  # users listed / found in the table (no ids)
        "timestamp_dst": ingest["timestamp_dst"],  # naive local times at a DST change
        "top": found["top"],
        "outputs": found["outputs"],
        "id_column": found["id_column"],
    }


def _write(
    plan: _Plan,
    scores: pl.DataFrame,
    top_frame: pl.DataFrame | None,
    report: dict[str, Any],
    started: float,
) -> dict[str, str]:
    """Write the scores (and top list) as one unit: staged, then renamed with the report
    (their SHA-256, with the total time filled in) last; returns what `write_outputs` lists."""
    writers: dict[Path, Writer] = {plan.out: scores.write_parquet}
    if top_frame is not None:
        csv = plan.top_path.suffix == ".csv"
        writers[plan.top_path] = top_frame.write_csv if csv else top_frame.write_parquet

    def finished() -> dict[str, Any]:  # called once the data files are written
        report["seconds"]["total"] = round(time.perf_counter() - started, 3)
        report["users_per_second"] = round(scores.height / report["seconds"]["total"], 1)
        return report

    return write_outputs(plan.out, writers, finished)


def score_events(
    artifact: str | Path,
    events: str | Path,
    out: str | Path,
    options: ScoreOptions | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Score every user with an event before the cutoff; returns the run report (also
    written next to ``out`` as ``<out>.report.json``). ``settings``: `ScoreOptions` fields
    by name, applied over ``options`` (``score_events(a, e, o, top="5%")``).

    Raises `ScoringError` before writing anything when the input or the artifact is not
    usable; the output files are written as one unit, the report (their SHA-256) renamed
    last (`engage_seq.serving.outputs`). Rows beyond the far-future limit are dropped before
    the default cutoff is taken (`engage_seq.serving.cutoff`)."""
    started = time.perf_counter()
    options = replace(options or ScoreOptions(), **settings)
    options.check()
    plan = _plan(artifact, out, options)
    out = plan.out
    # a killed run's temp files (raw ids), even if this run fails
    remove_leftovers(out, [plan.top_path])
    source = FileEventSource(str(events), csv_string_columns=(plan.mapping.user_id,))
    with shard_workspace(out, options.shards) as work:
        table = _read_table(plan, source, options, work)
        read_seconds = time.perf_counter() - started
        frames, users_total, seconds = _score_parts(plan, table, options.batch_size)
    if not frames:
        raise ScoringError(
            f"no user has an event before the cutoff {format_instant(table.at)}; "
            "pass a later --cutoff"
        )
    scores, matched_ids = _ranked(frames, plan, table, options)
    suppressed = int(scores["suppressed"].sum())
    suppress_listed = _suppress_listed(table, options, matched_ids, suppressed)
    top_frame, ties_at_cut = top_list(
        scores, parse_top(options.top, scores.height), plan.rank_target
    )
    top = None if top_frame is None else {
        "requested": options.top, "written": top_frame.height, "tied_just_below_cut": ties_at_cut
    }  # fmt: skip
    report = _run_report(
        artifact, table, scores, users_total, shards=options.shards,
        users_suppressed=suppressed, suppress_users_listed=suppress_listed, top=top,
        outputs=plan.meta.output_names, id_column=options.id_column,
    )  # fmt: skip
    report["seconds"] = {"read_and_validate": round(read_seconds, 3), **{
        k: round(v, 3) for k, v in seconds.items()}}  # fmt: skip
    report["files"] = _write(plan, scores, top_frame, report, started)
    return report
