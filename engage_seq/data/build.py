"""Raw events -> samples files + what was fitted on the training period, in memory or sharded.

Two ways to the same samples:

* `build_in_memory`: one validated frame, one lazy plan, collected once (fastest when it fits);
* `build_sharded`: out of core. One streaming pass splits the raw rows into user-hash shards;
  every per-user step (validation with duplicates and consent, HMAC keys, histories, samples)
  then runs on one shard at a time, and only mergeable statistics cross shards (drop counts,
  time span, token counts, numeric moments, per-split sums). Samples land as one Parquet file
  per shard, so training ranks can read their own shards.

Both count every eligibility rule per split and refuse empty splits or targets without a
positive label (`splits`); the sharding steps live in `shards`.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from engage_seq.common.messages import IDENTIFIER_MIN_VALUES
from engage_seq.common.times import format_instant
from engage_seq.data.id_lists import check_opt_out
from engage_seq.data.ingest import IngestConfig, text_user_ids
from engage_seq.data.sampling import CutoffPlan, SamplingConfig, plan_cutoffs
from engage_seq.data.schema import (
    ColumnMapping,
    EventSchemaError,
    check_columns,
    looks_like_identifier,
)
from engage_seq.data.sequences import build_samples
from engage_seq.data.shards import merge_ingest_reports, split_by_user
from engage_seq.data.splits import add_nested, apply_eligibility, split_report, split_sums
from engage_seq.data.tasks import Task
from engage_seq.data.validation import check_drops, validate_events
from engage_seq.data.vocabulary import (
    count_tokens,
    fit_vocabulary,
    numeric_moments,
    scaling_from_moments,
    vocabulary_from_counts,
)

log = logging.getLogger(__name__)
SAMPLE_FILE = "samples-{:05d}.parquet"


class EventSource(Protocol):
    """Anything that yields a raw event table: `scan` it, `describe` it in messages, and
    `fingerprint` what determines its content (for cache keys)."""

    def fingerprint(self) -> dict[str, object]: ...
    def scan(self) -> pl.LazyFrame: ...
    def describe(self) -> str: ...


@dataclass
class BuildResult:
    vocabulary: dict[str, list[str]]
    numeric_scaling: dict[str, dict[str, float]]
    plan: CutoffPlan
    report: dict[str, Any]
    samples: pl.DataFrame | None = None  # in-memory builds hand the frame back
    files: list[Path] = field(default_factory=list)


def _check_targets(task: Task, vocabulary: dict[str, list[str]]) -> None:
    """Every target occurs in training. The event types seen are listed, unless there are so
    many that data.columns.event_type is likely an identifier (an e-mail, an order id), whose
    values must not reach a message."""
    unknown = sorted(set(task.targets) - set(vocabulary["event_type"]))
    if unknown:
        seen = vocabulary["event_type"]
        listed = (
            f"event types seen: {seen}"
            if len(seen) <= IDENTIFIER_MIN_VALUES
            else f"{len(seen)} event types seen (not listed: that many looks like an "
            "identifier mapped as data.columns.event_type)"
        )
        raise ValueError(
            f"task {task.name!r}: target event type(s) {unknown} never occur in the training "
            f"period; {listed}. Check the spelling in the task config."
        )


def check_constant_targets(task: Task, mapping: ColumnMapping) -> None:
    """A table without an event-type column holds one kind of event: every target must be it."""
    if mapping.event_type is not None:
        return
    kind = mapping.constant_event_type
    if "label_next_event" in task.label_columns:
        raise EventSchemaError(
            f"task {task.name!r} predicts the next event's type, but data.columns.event_type "
            f"is null: every event is a {kind!r}, so there is nothing to choose between. Use a "
            "horizon task (e.g. task=purchase_7d), or map the table's event-type column."
        )
    other = sorted(set(task.targets) - {kind})
    if other:
        raise EventSchemaError(
            f"task {task.name!r}: data.columns.event_type is null, so every row is a "
            f"{kind!r} event (data.columns.constant_event_type), but the target event type(s) "
            f"{other} are not. Set task.targets=[{kind}], or name the rows' kind with "
            "data.columns.constant_event_type, or map the table's event-type column with "
            "data.columns.event_type."
        )


def _report(
    ingest: dict[str, Any],
    plan: CutoffPlan,
    sampling: SamplingConfig,
    vocabulary: dict[str, list[str]],
    scaling: dict[str, dict[str, float]],
    dropped: dict[str, dict[str, int]],
    splits: dict[str, dict[str, float]],
) -> dict[str, Any]:
    for column, values in vocabulary.items():
        if column.startswith("cat_") and looks_like_identifier(len(values), ingest["users"]):
            log.warning(
                "categorical %s has %d training values for %d users: identifier-like, so its "
                "embedding learns little; raise data.sampling.min_category_count or drop it",
                column, len(values), ingest["users"],
            )  # fmt: skip
    return {
        **ingest,
        "cutoffs": plan.to_dict(),
        "train_cutoffs_requested": sampling.n_train_cutoffs,
        "samples_dropped": dropped,
        "vocabulary_sizes": {k: len(v) for k, v in vocabulary.items()},
        "numeric_scaling": scaling,
        "splits": splits,
        "shards": sampling.shards,
    }


# --- the two builders --------------------------------------------------------------------

FUTURE_TOLERANCE_SECONDS = 366 * 86_400


def check_time_span(ts_max: int, where: str) -> None:
    """Refuse events far in the future (a 9999-12-31 placeholder, a wrong epoch unit): the
    cutoffs would be planned around them and every label window would be empty."""
    if ts_max > time.time() + FUTURE_TOLERANCE_SECONDS:
        raise EventSchemaError(
            f"{where}: the latest event is at {format_instant(ts_max)}, more than a year from "
            "now (a placeholder date or a wrong data.columns.epoch_unit?). Cutoffs are planned "
            "from the latest event. Set data.ingest.end to drop such rows (counted as "
            "out_of_date_range) or fix the data."
        )


def build_in_memory(
    source: EventSource,
    mapping: ColumnMapping,
    task: Task,
    sampling: SamplingConfig,
    ingest: IngestConfig,
    out_dir: Path,
) -> BuildResult:
    """Validate, plan, fit, build and write one samples file, all in memory."""
    check_constant_targets(task, mapping)
    source = text_user_ids(source, mapping)
    validated = validate_events(source.scan(), mapping, ingest, source.describe())
    events = validated.events.collect().lazy()  # used three times below: resolve joins once
    assert validated.ts_min is not None and validated.ts_max is not None  # checked by validate
    check_time_span(validated.ts_max, source.describe())
    plan = plan_cutoffs(validated.ts_min, validated.ts_max + 1, task, sampling)
    vocabulary = fit_vocabulary(events, max(plan.train), sampling.min_category_count)
    _check_targets(task, vocabulary)
    scaling = scaling_from_moments(numeric_moments(events, max(plan.train)))
    samples = build_samples(events, task, plan, sampling.max_len).collect()
    samples, dropped = apply_eligibility(samples, task, sampling)
    splits = split_report(split_sums(samples, task), task, plan)
    path = out_dir / SAMPLE_FILE.format(0)
    # lz4: a cache is read back soon and often; it writes ~25% faster than zstd
    samples.write_parquet(path, compression="lz4")
    report = _report(validated.report, plan, sampling, vocabulary, scaling, dropped, splits)
    return BuildResult(vocabulary, scaling, plan, report, samples, [path])


def _validate_shards(
    shard_dirs: list[tuple[int, Path]],
    mapping: ColumnMapping,
    ingest: IngestConfig,
    sampling: SamplingConfig,
    where: str,
    work: Path,
) -> tuple[dict[str, Any], list[tuple[int, int]], list[Path]]:
    """Phase 1: validate each shard and keep its clean canonical events (one file each in
    ``work``). Returns the merged ingest report, each shard's (first, last) event time, and
    the clean files; each shard's raw rows (raw ids included) are deleted once read."""
    ingest_reports, spans, clean = [], [], []
    for k, (shard, shard_dir) in enumerate(shard_dirs):
        label = f"{where} (shard {shard + 1}/{sampling.shards})"
        validated = validate_events(
            pl.scan_parquet(shard_dir), mapping, ingest, label, partial=True
        )
        path = work / f"clean-{k:05d}.parquet"
        validated.events.collect().write_parquet(path, compression="lz4")
        shutil.rmtree(shard_dir)  # raw rows (and raw ids) go as soon as possible
        ingest_reports.append(validated.report)
        if validated.ts_min is not None and validated.ts_max is not None:
            spans.append((validated.ts_min, validated.ts_max))
        clean.append(path)
    return merge_ingest_reports(ingest_reports, where), spans, clean


@dataclass
class _ShardParts:
    """What phase 2 keeps of each shard: mergeable statistics (summed by `add_nested`) and
    the samples file it wrote."""

    tokens: list[dict[str, dict[str, int]]] = field(default_factory=list)
    moments: list[dict[str, dict[str, float]]] = field(default_factory=list)
    sums: list[dict[str, dict[str, float]]] = field(default_factory=list)
    drops: list[dict[str, dict[str, int]]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _build_shard_samples(
    clean: list[Path], task: Task, plan: CutoffPlan, sampling: SamplingConfig, out_dir: Path
) -> _ShardParts:
    """Phase 2: per shard, training-period statistics and samples (one samples file each);
    each clean file is deleted once its samples are written."""
    train_end = max(plan.train)
    parts = _ShardParts()
    for k, path in enumerate(clean):
        events = pl.read_parquet(path).lazy()
        parts.tokens.append(count_tokens(events, train_end))
        parts.moments.append(numeric_moments(events, train_end))
        samples = build_samples(events, task, plan, sampling.max_len).collect()
        samples, dropped = apply_eligibility(samples, task, sampling)
        parts.sums.append(split_sums(samples, task))
        parts.drops.append(dropped)
        out = out_dir / SAMPLE_FILE.format(k)
        samples.write_parquet(out, compression="lz4")
        parts.files.append(out)
        path.unlink()
        log.info("shard %d/%d: %d samples", k + 1, len(clean), samples.height)
    return parts


def build_sharded(
    source: EventSource,
    mapping: ColumnMapping,
    task: Task,
    sampling: SamplingConfig,
    ingest: IngestConfig,
    out_dir: Path,
) -> BuildResult:
    """Out-of-core build: memory holds one shard (~1/shards of the events) at a time.

    The temporary shard files hold raw rows (raw ids included) and live only inside
    ``out_dir/_work``, which is removed before this returns, even on error.
    """
    check_constant_targets(task, mapping)
    source = text_user_ids(source, mapping)
    where = source.describe()
    raw = source.scan()
    check_columns(raw.collect_schema(), mapping, where, raw)
    work = out_dir / "_work"
    try:
        shard_dirs = split_by_user(raw, mapping, sampling.shards, work / "raw", where)
        if not shard_dirs:
            raise EventSchemaError(f"{where} is empty: no rows to build samples from")
        ingest_report, spans, clean = _validate_shards(
            shard_dirs, mapping, ingest, sampling, where, work
        )
        check_drops(ingest_report["rows_dropped"], ingest_report["rows_kept"], ingest, where)
        check_opt_out(ingest_report["opt_out"], ingest, where)
        # fail before the expensive phase on a target that never occurs at all (the precise
        # training-period check follows once the token counts are merged)
        _check_targets(task, {"event_type": ingest_report["event_types"]})
        check_time_span(max(s[1] for s in spans), where)
        plan = plan_cutoffs(min(s[0] for s in spans), max(s[1] for s in spans) + 1, task, sampling)
        parts = _build_shard_samples(clean, task, plan, sampling, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    vocabulary = vocabulary_from_counts(add_nested(parts.tokens), sampling.min_category_count)
    _check_targets(task, vocabulary)
    scaling = scaling_from_moments(add_nested(parts.moments))
    splits = split_report(add_nested(parts.sums), task, plan)
    drops = add_nested(parts.drops)
    report = _report(ingest_report, plan, sampling, vocabulary, scaling, drops, splits)
    log.info("built %d shards from %s (%s .. %s)", len(parts.files), where,
             format_instant(plan.train[0]), format_instant(plan.test[-1]))  # fmt: skip
    return BuildResult(vocabulary, scaling, plan, report, None, parts.files)
