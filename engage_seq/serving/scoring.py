"""`engage-score`: an exported artifact + a raw event table -> ``scores.parquet``.

No Lightning, no Hydra, no model classes: the artifact is loaded with ``torch.jit.load`` and
its metadata says how to read the table (column mapping), encode it (vocabularies, scaling,
``max_len``) and name the outputs. Events are validated and encoded in Polars by the same
functions that built the training samples, then scored in length-sorted batches through the
artifact's tensor entry point (the raw entry point computes the same inputs per user, which
the export's parity harness checks; batching them in Polars is what makes a million users
fast).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from engage_seq.cli.args import parse_instant_arg
from engage_seq.common.errors import EngageSeqError
from engage_seq.common.times import format_instant
from engage_seq.data.encoding import (
    Vocabulary,
    encode_events_at_cutoff,
    numeric_scaling_from_metadata,
)
from engage_seq.data.id_lists import check_list_matches, check_opt_out, listed_count, read_id_list
from engage_seq.data.ingest import FileEventSource, IngestConfig
from engage_seq.data.schema import ColumnMapping, EventSchemaError, check_columns, read_error
from engage_seq.data.shards import merge_ingest_reports, split_by_user
from engage_seq.data.validation import check_drops, validate_events
from engage_seq.serving.cutoff import (
    check_cutoff_range,
    explain_drop_error,
    far_future_limit,
    warn_far_future,
)
from engage_seq.serving.loading import ArtifactIntegrityError, load_artifact
from engage_seq.serving.outputs import (
    Writer,
    remove_leftovers,
    report_path,
    shard_workspace,
    write_outputs,
)

log = logging.getLogger(__name__)

SUPPORTED_FORMATS = (2,)  # artifact format versions this scorer understands
REQUIRED_METADATA = (
    "format_version",
    "output_names",
    "vocabulary",
    "categorical_attributes",
    "numeric_attributes",
    "numeric_scaling",
    "max_len",
    "task",
)


class ScoringError(EngageSeqError, ValueError):
    """Bad input for engage-score; the message says what to change. Nothing was written."""


def load_scoring_artifact(
    path: str | Path, allow_unverified: bool | None = None, require_signed: bool | None = None
) -> tuple[Any, dict[str, Any]]:
    """The scripted module and its metadata, checked against each other.

    Before torch parses the file it must look like a TorchScript archive and match its
    ``<artifact>.sha256`` sidecar (`engage_seq.serving.loading.verify_artifact`). A missing sidecar
    is
    refused unless ``allow_unverified`` (None: the ``ENGAGE_SEQ_ALLOW_UNVERIFIED``
    environment variable, which also covers engage-drift and engage-backtest); a mismatch is
    always refused. ``require_signed`` (None: ``ENGAGE_SEQ_REQUIRE_SIGNED``) also refuses an
    artifact without a valid ``<artifact>.sig`` (`engage_seq.serving.loading.verify_provenance`).
    """
    path = Path(path)
    if not path.exists():  # a folder or an unreadable file: named by check_archive
        raise ScoringError(f"artifact {path} does not exist")
    try:
        module, metadata = load_artifact(
            path, allow_unverified=allow_unverified, require_signed=require_signed
        )
    except ArtifactIntegrityError as exc:  # foreign, altered or unverifiable: nothing parsed
        raise ScoringError(str(exc)) from None
    except (RuntimeError, ValueError) as exc:
        raise ScoringError(f"{path} is not a TorchScript artifact: {exc}") from None
    if not metadata:
        raise ScoringError(f"{path} carries no metadata.json: export it with engage-export")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ScoringError(f"{path}: metadata lacks {missing}; re-export it with engage-export")
    if metadata["format_version"] not in SUPPORTED_FORMATS:
        raise ScoringError(
            f"{path} has artifact format {metadata['format_version']}; this engage-score reads "
            f"{list(SUPPORTED_FORMATS)}: re-export the run with this version of engage-export"
        )
    names = list(module.output_names())
    if names != list(metadata["output_names"]):
        raise ScoringError(
            f"{path}: the module's outputs {names} do not match its metadata "
            f"{metadata['output_names']}; the file was altered or assembled by hand"
        )
    return module, metadata


def column_mapping(metadata: dict[str, Any]) -> ColumnMapping:
    """How the training table's columns were mapped (older artifacts: defaults plus the
    attribute names the model was trained on)."""
    recorded = metadata.get("column_mapping")
    if recorded:
        return ColumnMapping(**recorded)
    return ColumnMapping(
        categorical=tuple(c.removeprefix("cat_") for c in metadata["categorical_attributes"]),
        numeric=tuple(c.removeprefix("num_") for c in metadata["numeric_attributes"]),
    )


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


def parse_top(value: str | None, n_users: int) -> int | None:
    """``500`` -> 500 users; ``5%`` -> 5 % of the scored users (rounded up)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return math.ceil(n_users * share / 100)
        count = int(text)
        if count <= 0:
            raise ValueError
        return count
    except ValueError:
        raise ScoringError(
            f"--top must be a positive count or a percentage, got {value!r}"
        ) from None


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
            inputs = encoded.batch(index)[:6]
            began = time.perf_counter()
            outputs.append(module(*inputs).float().numpy())
            seconds += time.perf_counter() - began
    probabilities = np.empty((n, outputs[0].shape[1] if outputs else 0), dtype=np.float32)
    if outputs:
        probabilities[order] = np.concatenate(outputs)
    return probabilities, seconds


def rank_columns(scores: pl.DataFrame, targets: list[str], id_column: str) -> pl.DataFrame:
    """rank_<t> (1 = most likely) and decile_<t> (1 = top 10 %) for every horizon target.
    Equal scores are ranked by id, so a top-k cut through a tie is the same on every run."""
    n = scores.height
    for target in targets:
        rank = pl.int_range(1, n + 1, dtype=pl.Int64)
        scores = scores.sort([f"score_{target}", id_column], descending=[True, False]).with_columns(
            rank.alias(f"rank_{target}"),
            ((rank - 1) * 10 // max(n, 1) + 1).cast(pl.Int8).alias(f"decile_{target}"),
        )
    return scores


def ingest_config(metadata: dict[str, Any], **overrides: Any) -> IngestConfig:
    """The training run's ingest rules (duplicates, drop limit, salt variable), so a table is
    read for scoring as it was for training; date filters and opt-out files are the scoring
    job's own (``--opt-out``)."""
    recorded = ((metadata.get("config") or {}).get("data") or {}).get("ingest") or {}
    kept = {
        k: recorded[k]
        for k in ("drop_duplicates", "max_drop_fraction", "salt_env", "opt_out_must_match")
        if k in recorded
    }
    return IngestConfig(**{**kept, **{k: v for k, v in overrides.items() if v is not None}})


def _read_suppression_list(path: str, mapping: ColumnMapping) -> pl.DataFrame:
    try:
        return read_id_list(path, mapping, "suppression list").collect()
    except pl.exceptions.PolarsError as exc:
        raise read_error(f"suppression list {path!r}", exc) from exc


def score_events(
    artifact: str | Path,
    events: str | Path,
    out: str | Path,
    cutoff: str | None = None,
    suppress: str | None = None,
    top: str | None = None,
    top_out: str | Path | None = None,
    rank_by: str | None = None,
    batch_size: int = 4096,
    ids: str = "raw",
    opt_out: str | None = None,
    max_drop_fraction: float | None = None,
    allow_unverified: bool | None = None,
    shards: int = 1,
    require_signed: bool | None = None,
    opt_out_must_match: bool | None = None,
) -> dict[str, Any]:
    """Score every user with an event before the cutoff; returns the run report (also
    written next to ``out`` as ``<out>.report.json``). Raises `ScoringError` before writing
    anything when the input or the artifact is not usable (``allow_unverified``,
    ``require_signed``: see `load_scoring_artifact`); the output files are written as one
    unit, the report (their SHA-256) renamed last (`engage_seq.serving.outputs`). Rows beyond
    the far-future limit are dropped before the default cutoff is taken
    (`engage_seq.serving.cutoff`).
    ``shards > 1`` scores the users in that many hash-split parts, one in memory at a time
    (`validated_parts`), for tables that do not fit; the scores are the same."""
    started = time.perf_counter()
    if batch_size < 1:
        raise ScoringError(f"--batch-size must be at least 1, got {batch_size}")
    if shards < 1:
        raise ScoringError(f"--shards must be at least 1, got {shards}")
    if ids not in ("raw", "key"):
        raise ScoringError(f"--ids must be 'raw' or 'key', got {ids!r}")
    module, metadata = load_scoring_artifact(artifact, allow_unverified, require_signed)
    mapping = column_mapping(metadata)
    targets = [n for n in metadata["output_names"] if not n.startswith("next_event/")]
    if rank_by is not None and rank_by not in targets:
        raise ScoringError(f"--rank-by must be one of the artifact's targets {targets}")
    if top is not None and not targets:
        raise ScoringError("--top ranks by a horizon target; this artifact has none")
    parse_top(top, 1)  # a malformed --top fails now, not after reading the table
    rank_target = rank_by or (targets[0] if targets else None)
    out = Path(out)
    top_path = Path(top_out) if top_out else out.with_name(f"{out.stem}_top{out.suffix}")
    for path in (out, top_path) if top else (out,):
        if path.parent.exists() and not path.parent.is_dir():
            raise ScoringError(f"cannot write {path}: {path.parent} is not a folder")
    if top and top_path.resolve() in (out.resolve(), report_path(out).resolve()):
        raise ScoringError(f"--top-out {top_path} would overwrite the scores or their report")
    limit = far_future_limit(parse_cutoff(cutoff, None) if cutoff is not None else None)
    remove_leftovers(out, [top_path])  # a killed run's temp files (raw ids), even if this fails
    source = FileEventSource(str(events), csv_string_columns=(mapping.user_id,))
    vocabulary = Vocabulary.from_metadata(metadata)
    with shard_workspace(out, shards) as work:
        try:
            config = ingest_config(
                metadata,
                opt_out_path=opt_out,
                max_drop_fraction=max_drop_fraction,
                opt_out_must_match=opt_out_must_match,
                end=format_instant(limit),  # far-future rows: out_of_date_range
            )
            parts, ingest_report, ts_max = validated_parts(source, mapping, config, work, shards)
            listed = _read_suppression_list(suppress, mapping) if suppress else None
        except EventSchemaError as exc:
            message = explain_drop_error(str(exc), source.scan, mapping, limit, source.describe())
            raise ScoringError(message) from None
        far_future = warn_far_future(
            source.scan(), mapping, limit, source.describe(),
            ingest_report["rows_dropped"]["out_of_date_range"],
        )  # fmt: skip
        at = parse_cutoff(cutoff, ts_max)
        read_seconds = time.perf_counter() - started
        frames, users_total, encode_seconds, model_seconds = [], 0, 0.0, 0.0
        for part in parts:  # one user shard in memory at a time
            began = time.perf_counter()
            canonical = part.collect()
            keys, encoded = encode_events_at_cutoff(
                canonical.lazy().drop("user_id"),
                at,
                vocabulary,
                numeric_scaling_from_metadata(metadata),
                int(metadata["max_len"]),
            )
            users_total += canonical["user_key"].n_unique()
            encode_seconds += time.perf_counter() - began
            if len(encoded) == 0:
                continue
            probabilities, seconds = predict_in_batches(module, encoded, batch_size)
            model_seconds += seconds
            id_map = canonical.select("user_key", "user_id").unique("user_key")
            del canonical, encoded
            frame = pl.DataFrame({"user_key": keys}).with_columns(
                pl.Series(f"score_{name}", probabilities[:, i])
                for i, name in enumerate(metadata["output_names"])
            )
            frames.append(frame.join(id_map, on="user_key", how="left", maintain_order="left"))
    if not frames:
        raise ScoringError(
            f"no user has an event before the cutoff {format_instant(at)}; pass a later --cutoff"
        )
    scores = pl.concat(frames)
    suppressed_ids = listed["user_id"] if listed is not None else pl.Series([], dtype=pl.String)
    scores = scores.with_columns(
        pl.col("user_id").is_in(suppressed_ids.implode()).alias("suppressed")
    )
    matched_ids = scores.filter(pl.col("suppressed"))["user_id"]  # raw ids, as listed
    id_column = "user_id" if ids == "raw" else "user_key"
    scores = rank_columns(scores, targets, id_column)
    if rank_target is not None:
        scores = scores.sort(f"rank_{rank_target}")
    # the caller's own ids, to act on the scores (never logged); or the pseudonymous key
    ranked = [c for t in targets for c in (f"rank_{t}", f"decile_{t}")]
    score_columns = [f"score_{name}" for name in metadata["output_names"]]
    scores = scores.select(id_column, *score_columns, *ranked, "suppressed")
    suppressed = int(scores["suppressed"].sum())
    if suppress:
        try:  # listed users without an event before the cutoff are not scored: not matched
            suppress_listed = listed_count(listed, matched_ids, "suppression list", suppress)
            check_list_matches("suppression list", suppress, suppress_listed, suppressed,
                               "the scored users", config.opt_out_must_match)  # fmt: skip
        except EventSchemaError as exc:
            raise ScoringError(str(exc)) from None
    top_count = parse_top(top, scores.height)
    top_frame = None
    ties_at_cut = 0
    if top_count is not None and rank_target is not None:
        eligible = scores.filter(~pl.col("suppressed"))
        top_frame = eligible.head(top_count)
        if 0 < top_frame.height < eligible.height:
            last = top_frame[f"score_{rank_target}"][-1]
            ties_at_cut = int((eligible[top_frame.height :][f"score_{rank_target}"] == last).sum())
    report = {
        "artifact": str(artifact),
        "events": source.describe(),
        "cutoff": format_instant(at),
        "rows_read": ingest_report["rows_read"],
        "rows_kept": ingest_report["rows_kept"],
        "rows_dropped": ingest_report["rows_dropped"],
        "numeric_missing": ingest_report["numeric_missing"],  # kept, scaled as missing
        "categorical_missing": ingest_report["categorical_missing"],  # kept, as "none"
        "far_future": far_future,  # rows at or after its limit: dropped (out_of_date_range)
        "shards": shards,
        "users_in_table": users_total,
        "users_scored": scores.height,
        "users_without_events_before_cutoff": users_total - scores.height,
        "users_suppressed": suppressed,
        "suppress_users_listed": suppress_listed if suppress else None,
        "opt_out": ingest_report["opt_out"],  # users listed / found in the table (no ids)
        "timestamp_dst": ingest_report["timestamp_dst"],  # naive local times at a DST change
        "top": None
        if top_frame is None
        else {"requested": top, "written": top_frame.height, "tied_just_below_cut": ties_at_cut},
        "outputs": metadata["output_names"],
        "id_column": id_column,
        "seconds": {
            "read_and_validate": round(read_seconds, 3),
            "encode": round(encode_seconds, 3),
            "model": round(model_seconds, 3),
        },
    }
    writers: dict[Path, Writer] = {out: scores.write_parquet}
    if top_frame is not None:
        csv = top_path.suffix == ".csv"
        writers[top_path] = top_frame.write_csv if csv else top_frame.write_parquet

    def finished() -> dict[str, Any]:  # called once the data files are written
        report["seconds"]["total"] = round(time.perf_counter() - started, 3)
        report["users_per_second"] = round(scores.height / report["seconds"]["total"], 1)
        return report

    # one unit: staged, then renamed with the report (their SHA-256) last (score_outputs)
    report["files"] = write_outputs(out, writers, finished)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="engage-score",
        description="Score users with an exported artifact: raw events (Parquet or CSV) in, "
        "scores.parquet out (user id, score, rank and decile per target). Needs no Lightning "
        "or Hydra.",
    )
    parser.add_argument("artifact", help="TorchScript artifact written by engage-export")
    parser.add_argument("events", help="event table: Parquet file/dir/glob or CSV")
    parser.add_argument(
        "--out", default="scores.parquet",
        help="scores file (Parquet); <out>.report.json, written last, lists each file's SHA-256",
    )  # fmt: skip
    parser.add_argument(
        "--cutoff", help="score as of this ISO time or epoch second (default: just after the "
        "latest event; rows over a year ahead of now are dropped first); only earlier events count"
    )  # fmt: skip
    parser.add_argument("--suppress", help="do-not-contact list (Parquet/CSV of user ids): "
                        "scored and flagged, never in the top list")  # fmt: skip
    parser.add_argument("--top", help="also write the top K users (e.g. 1000) or K%% (e.g. 5%%)")
    parser.add_argument("--top-out", help="top list path (default: <out stem>_top.parquet)")
    parser.add_argument("--rank-by", help="target ranking the top list (default: the first)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument(
        "--shards", type=int, default=1,
        help="score the users in N hash-split parts, one in memory at a time (memory ~1/N; "
        "for tables that do not fit). The split files go next to --out and are removed",
    )  # fmt: skip
    parser.add_argument("--opt-out", help="opt-out list (Parquet/CSV of user ids): not scored")
    parser.add_argument(
        "--opt-out-must-match", action="store_true", default=None,
        help="refuse an --opt-out or --suppress list whose users are not all in the table "
        "(default: warn; or the training run's data.ingest.opt_out_must_match)",
    )  # fmt: skip
    parser.add_argument(
        "--max-drop-fraction", type=float,
        help="refuse tables losing more rows than this on ingest (default: the training run's)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--ids", choices=("raw", "key"), default="raw",
        help="raw: the table's user ids (to act on); key: the pseudonymous user_key",
    )  # fmt: skip
    parser.add_argument(
        "--allow-unverified", action="store_true", default=None,
        help="score an artifact that has no <artifact>.sha256 sidecar (hand-made or older "
        "exports); a sidecar that does not match is refused regardless",
    )  # fmt: skip
    parser.add_argument(
        "--require-signed", action="store_true", default=None,
        help="refuse an artifact without a valid <artifact>.sig (keys: ENGAGE_SEQ_SIGNING_KEYS; "
        "default: ENGAGE_SEQ_REQUIRE_SIGNED)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = score_events(
            args.artifact,
            args.events,
            args.out,
            cutoff=args.cutoff,
            suppress=args.suppress,
            top=args.top,
            top_out=args.top_out,
            rank_by=args.rank_by,
            batch_size=args.batch_size,
            ids=args.ids,
            opt_out=args.opt_out,
            max_drop_fraction=args.max_drop_fraction,
            allow_unverified=args.allow_unverified,
            shards=args.shards,
            require_signed=args.require_signed,
            opt_out_must_match=args.opt_out_must_match,
        )
    except (ScoringError, EventSchemaError, OSError) as exc:
        print(f"engage-score: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"scored {report['users_scored']:,} users as of {report['cutoff']} "
        f"({report['users_without_events_before_cutoff']:,} without earlier events, "
        f"{report['users_suppressed']:,} suppressed) in {report['seconds']['total']:.1f} s "
        f"({report['users_per_second']:,.0f} users/s) -> {args.out}"
    )
    dropped = {k: v for k, v in report["rows_dropped"].items() if v}
    print(f"rows read {report['rows_read']:,}, kept {report['rows_kept']:,}, dropped {dropped}")
    missing = {
        f"{kind} {column}": n
        for kind in ("numeric", "categorical")
        for column, n in report[f"{kind}_missing"].items()
        if n
    }
    if missing:
        print(f"kept rows with a missing value (treated as missing): {missing}")
    if report["top"]:
        print(f"top list: {report['top']['written']:,} users (suppressed users left out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
