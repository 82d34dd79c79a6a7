"""Raw events -> samples files + what was fitted on the training period, in memory or sharded.

Two ways to the same samples:

* `build_in_memory`: one validated frame, one lazy plan, collected once (fastest when it fits);
* `build_sharded`: out of core. One streaming pass splits the raw rows into user-hash shards;
  every per-user step (validation with duplicates and consent, HMAC keys, histories, samples)
  then runs on one shard at a time, and only mergeable statistics cross shards (drop counts,
  time span, token counts, numeric moments, per-split sums). Samples land as one Parquet file
  per shard, so training ranks can read their own shards.

Both count every eligibility rule per split and refuse empty splits or targets without a
positive label.
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
from engage_seq.common.times import format_instant, parse_duration
from engage_seq.data.id_lists import check_opt_out
from engage_seq.data.ingest import IngestConfig, text_user_ids
from engage_seq.data.sampling import SPLITS, CutoffPlan, SamplingConfig, plan_cutoffs
from engage_seq.data.schema import (
    DROP_REASONS,
    USER_KEY_SEED,
    ColumnMapping,
    EventSchemaError,
    check_columns,
    looks_like_identifier,
    read_error,
    user_id_text,
)
from engage_seq.data.sequences import build_samples
from engage_seq.data.tasks import NextEventTask, Task, next_event_part
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


# --- eligibility and per-split sums (mergeable across shards) ------------------------------


def eligibility_rules(task: Task, sampling: SamplingConfig) -> list[tuple[str, pl.Expr]]:
    """(name, keep-condition) pairs applied in order to the built samples."""
    rules = [("min_history_events", pl.col("n_history") >= sampling.min_history_events)]
    if sampling.active_within is not None:
        recent = pl.col("seconds_since_last") <= parse_duration(sampling.active_within)
        rules.append(("inactive", recent))
    if isinstance(task, NextEventTask):  # a MultiTask keeps them (masked in the loss)
        rules.append(("no_next_event_within_max_gap", pl.col("label_next_event").is_not_null()))
    if sampling.holdout_user_fraction > 0:
        held_out = (pl.col("user_key") % 10_000) < round(sampling.holdout_user_fraction * 10_000)
        rules.append(("holdout_users", (pl.col("split") == "train") != held_out))
    return rules


def apply_eligibility(
    samples: pl.DataFrame, task: Task, sampling: SamplingConfig
) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """Drop ineligible samples, counting each under the first rule it fails, per split.

    The rules are evaluated into one small column and the list-heavy frame is filtered at most
    once (copying it per rule cost seconds at 10M events).
    """
    rules = eligibility_rules(task, sampling)
    failed = pl.coalesce([pl.when(~keep).then(pl.lit(name)) for name, keep in rules])
    verdict = samples.select("split", failed.alias("failed"))
    counts = verdict.filter(pl.col("failed").is_not_null()).group_by("failed", "split").len()
    dropped: dict[str, dict[str, int]] = {name: {} for name, _ in rules}
    for name, split, n in counts.iter_rows():
        dropped[name][split] = n
    if counts.height:
        samples = samples.filter(verdict["failed"].is_null())
    return samples, dropped


def split_sums(samples: pl.DataFrame, task: Task) -> dict[str, dict[str, float]]:
    """Per split: samples, users, total history events and label sums (all additive; users
    are additive across shards because a user lives in exactly one shard)."""
    labels = [pl.col(f"label_{t}").sum().alias(f"positives/{t}") for t in task.targets]
    if next_event_part(task) is not None:
        labels += [
            pl.col("label_next_hours").sum().alias("hours_to_next_event_sum"),
            pl.col("label_next_hours").is_not_null().sum().alias("with_next_event"),
        ]
    rows = samples.group_by("split").agg(
        pl.len().alias("samples"),
        pl.col("user_key").n_unique().alias("users"),
        pl.col("n_history").sum().alias("history_events"),
        *labels,
    )
    return {row.pop("split"): row for row in rows.to_dicts()}


def add_nested(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Sum two-level dicts key by key: how shard statistics (split sums, eligibility drops,
    token counts, numeric moments) become the statistics of the whole table."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for outer, values in part.items():
            target = merged.setdefault(outer, {})
            for key, value in values.items():
                target[key] = target.get(key, 0) + value
    return merged


def split_report(
    sums: dict[str, dict[str, float]], task: Task, plan: CutoffPlan
) -> dict[str, dict[str, float]]:
    """Readable per-split figures; refuses empty splits and targets without a positive."""
    report = {}
    for split in SPLITS:
        values = sums.get(split, {})
        n = int(values.get("samples", 0))
        if n == 0:
            raise ValueError(
                f"the {split} split is empty (cutoffs {plan.to_dict()[split]}); lower "
                "min_history_events / active_within or move the cutoffs"
            )
        row: dict[str, float] = {
            "samples": n,
            "users": int(values["users"]),
            "cutoffs": len(getattr(plan, split)),
            "mean_history_events": values["history_events"] / n,
        }
        for target in task.targets:
            positives = int(values[f"positives/{target}"])
            if positives == 0:
                raise ValueError(
                    f"no positive label for target {target!r} in the {split} split ({n} "
                    f"samples, cutoffs {plan.to_dict()[split]}): its metrics would be "
                    "undefined. Use a longer horizon, other cutoffs or more data."
                )
            row[f"positive_rate/{target}"] = positives / n
        if next_event_part(task) is not None:
            with_next = values["with_next_event"]
            row["with_next_event"] = int(with_next)
            row["mean_hours_to_next_event"] = values["hours_to_next_event_sum"] / max(with_next, 1)
        report[split] = row
    return report


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
        "opt_out": None  # every shard read the whole list; its users are in one shard each
        if reports[0]["opt_out"] is None
        else {
            "users_listed": reports[0]["opt_out"]["users_listed"],
            "users_matched": sum(rep["opt_out"]["users_matched"] for rep in reports),
        },
    }


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
    source = text_user_ids(source, mapping)
    where = source.describe()
    raw = source.scan()
    check_columns(raw.collect_schema(), mapping, where, raw)
    work = out_dir / "_work"
    try:
        shard_dirs = split_by_user(raw, mapping, sampling.shards, work / "raw", where)
        if not shard_dirs:
            raise EventSchemaError(f"{where} is empty: no rows to build samples from")

        # Phase 1: validate each shard, keep its clean canonical events, merge the counts.
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
        ingest_report = merge_ingest_reports(ingest_reports, where)
        check_drops(ingest_report["rows_dropped"], ingest_report["rows_kept"], ingest, where)
        check_opt_out(ingest_report["opt_out"], ingest, where)
        # fail before the expensive phase on a target that never occurs at all (the precise
        # training-period check follows once the token counts are merged)
        _check_targets(task, {"event_type": ingest_report["event_types"]})
        check_time_span(max(s[1] for s in spans), where)
        plan = plan_cutoffs(min(s[0] for s in spans), max(s[1] for s in spans) + 1, task, sampling)
        train_end = max(plan.train)

        # Phase 2: per shard, training-period statistics and samples.
        token_parts, moment_parts, sums, drops, files = [], [], [], [], []
        for k, path in enumerate(clean):
            events = pl.read_parquet(path).lazy()
            token_parts.append(count_tokens(events, train_end))
            moment_parts.append(numeric_moments(events, train_end))
            samples = build_samples(events, task, plan, sampling.max_len).collect()
            samples, dropped = apply_eligibility(samples, task, sampling)
            sums.append(split_sums(samples, task))
            drops.append(dropped)
            out = out_dir / SAMPLE_FILE.format(k)
            samples.write_parquet(out, compression="lz4")
            files.append(out)
            path.unlink()
            log.info("shard %d/%d: %d samples", k + 1, len(clean), samples.height)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    vocabulary = vocabulary_from_counts(add_nested(token_parts), sampling.min_category_count)
    _check_targets(task, vocabulary)
    scaling = scaling_from_moments(add_nested(moment_parts))
    splits = split_report(add_nested(sums), task, plan)
    report = _report(ingest_report, plan, sampling, vocabulary, scaling, add_nested(drops), splits)
    log.info("built %d shards from %s (%s .. %s)", len(files), where,
             format_instant(plan.train[0]), format_instant(plan.test[-1]))  # fmt: skip
    return BuildResult(vocabulary, scaling, plan, report, None, files)
