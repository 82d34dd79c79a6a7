"""Build samples once per (data, task, sampling) configuration and reuse them from disk.

A sweep of 20 runs over model settings shares one cache entry. Entries are written to a
temporary folder and renamed into place, so a crash or a concurrent run never leaves a
half-written entry that a later run would read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from engage_seq import __version__
from engage_seq.ingest import IngestConfig, salt_fingerprint, validate_events
from engage_seq.schema import ColumnMapping
from engage_seq.sequences import (
    SPLITS,
    CutoffPlan,
    NextEventTask,
    SamplingConfig,
    Task,
    build_samples,
    fit_numeric_scaling,
    fit_vocabulary,
    parse_duration,
    plan_cutoffs,
)

log = logging.getLogger(__name__)
CACHE_FORMAT_VERSION = 1


class EventSource(Protocol):
    def fingerprint(self) -> dict[str, object]: ...
    def scan(self) -> pl.LazyFrame: ...


@dataclass
class PreparedSamples:
    """Samples of every split plus what was fitted on the training period."""

    samples: pl.DataFrame
    vocabulary: dict[str, list[str]]
    numeric_scaling: dict[str, dict[str, float]]
    plan: CutoffPlan
    report: dict[str, Any]
    cache_dir: Path

    def split(self, name: str) -> pl.DataFrame:
        return self.samples.filter(pl.col("split") == name)


def _code_fingerprint() -> str:
    """Hash of the modules that decide sample contents: editing them invalidates the cache."""
    from engage_seq import schema, sequences

    digest = hashlib.sha256()
    for module in (schema, sequences):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


def cache_key(
    source: EventSource,
    mapping: ColumnMapping,
    task: Task,
    sampling: SamplingConfig,
    ingest: IngestConfig,
) -> str:
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "engage_seq": __version__,
        "code": _code_fingerprint(),
        "polars": pl.__version__,  # user_key hashing is only stable within a polars version
        "source": source.fingerprint(),
        "mapping": asdict(mapping),
        "task": asdict(task),
        "sampling": asdict(sampling),
        "ingest": asdict(ingest),
        "salt": salt_fingerprint(ingest),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _split_report(samples: pl.DataFrame, task: Task) -> dict[str, Any]:
    if isinstance(task, NextEventTask):
        label_stats = [pl.col("label_next_hours").median().alias("median_hours_to_next_event")]
    else:
        label_stats = [
            pl.col(c).mean().alias(f"positive_rate/{c.removeprefix('label_')}")
            for c in task.label_columns
        ]
    rows = (
        samples.group_by("split")
        .agg(
            pl.len().alias("samples"),
            pl.col("user_key").drop_nulls().n_unique().alias("users"),
            pl.col("cutoff").n_unique().alias("cutoffs"),
            *label_stats,
            pl.col("n_history").median().alias("median_history_events"),
        )
        .to_dicts()
    )
    return {row.pop("split"): row for row in rows}


def eligibility_rules(task: Task, sampling: SamplingConfig) -> list[tuple[str, pl.Expr]]:
    """(name, keep-condition) pairs applied in order to the built samples."""
    rules = [("min_history_events", pl.col("n_history") >= sampling.min_history_events)]
    if sampling.active_within is not None:
        recent = pl.col("seconds_since_last") <= parse_duration(sampling.active_within)
        rules.append(("inactive", recent))
    if isinstance(task, NextEventTask):
        rules.append(("no_next_event_within_max_gap", pl.col("label_next_event").is_not_null()))
    if sampling.holdout_user_fraction > 0:
        held_out = (pl.col("user_key") % 10_000) < round(sampling.holdout_user_fraction * 10_000)
        rules.append(("holdout_users", (pl.col("split") == "train") != held_out))
    return rules


def apply_eligibility(
    samples: pl.DataFrame, task: Task, sampling: SamplingConfig
) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """Filter samples rule by rule, counting what each rule removes per split."""
    dropped: dict[str, dict[str, int]] = {}
    for name, keep in eligibility_rules(task, sampling):
        removed = samples.filter(~keep).group_by("split").len()
        dropped[name] = {split: n for split, n in removed.iter_rows()}
        samples = samples.filter(keep)
    return samples, dropped


def build_prepared(
    source: EventSource,
    mapping: ColumnMapping,
    task: Task,
    sampling: SamplingConfig,
    ingest: IngestConfig | None = None,
) -> tuple[pl.DataFrame, dict[str, list[str]], CutoffPlan, dict[str, Any]]:
    """Run the builder without the cache: validate, plan cutoffs, fit vocab, build, filter."""
    where = source.describe() if hasattr(source, "describe") else type(source).__name__
    validated = validate_events(source.scan(), mapping, ingest or IngestConfig(), where)
    events = validated.events
    plan = plan_cutoffs(validated.ts_min, validated.ts_max + 1, task, sampling)
    vocabulary = fit_vocabulary(events, max(plan.train), sampling.min_category_count)
    numeric_scaling = fit_numeric_scaling(events, max(plan.train))
    unknown_targets = sorted(set(task.targets) - set(vocabulary["event_type"]))
    if unknown_targets:
        raise ValueError(
            f"task {task.name!r}: target event type(s) {unknown_targets} never occur in the "
            f"training period; event types seen: {vocabulary['event_type']}. Check the spelling "
            "in the task config."
        )
    samples = build_samples(events, task, plan, sampling.max_len).collect()
    samples, dropped = apply_eligibility(samples, task, sampling)
    for split in SPLITS:
        part = samples.filter(pl.col("split") == split)
        if part.height == 0:
            raise ValueError(
                f"the {split} split is empty (cutoffs {plan.to_dict()[split]}); lower "
                "min_history_events or move the cutoffs"
            )
        for target, column in zip(task.targets, task.label_columns, strict=False):
            if not part[column].any():
                raise ValueError(
                    f"no positive label for target {target!r} in the {split} split "
                    f"({part.height} samples, cutoffs {plan.to_dict()[split]}): its metrics "
                    "would be undefined. Use a longer horizon, other cutoffs or more data."
                )
    report = {
        **validated.report,
        "cutoffs": plan.to_dict(),
        "train_cutoffs_requested": sampling.n_train_cutoffs,
        "samples_dropped": dropped,
        "vocabulary_sizes": {k: len(v) for k, v in vocabulary.items()},
        "numeric_scaling": numeric_scaling,
        "splits": _split_report(samples, task),
    }
    return samples, vocabulary, plan, report


def _write_entry(
    entry: Path,
    samples: pl.DataFrame,
    vocabulary: dict[str, list[str]],
    plan: CutoffPlan,
    report: dict[str, Any],
) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        # lz4: a cache is read back soon and often; it writes ~25% faster than zstd
        samples.write_parquet(tmp / "samples.parquet", compression="lz4")
        manifest = {
            "vocabulary": vocabulary,
            "plan": {
                "train": plan.train,
                "val": plan.val,
                "test": plan.test,
                "horizon_seconds": plan.horizon_seconds,
            },
            "report": report,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "manifest.json").exists():  # not a concurrent writer: re-raise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def prepare_samples(
    source: EventSource,
    task: Task,
    sampling: SamplingConfig,
    cache_dir: str | Path,
    mapping: ColumnMapping | None = None,
    ingest: IngestConfig | None = None,
) -> PreparedSamples:
    """Samples for ``task``, from the cache when this configuration was built before."""
    mapping = mapping or ColumnMapping()
    ingest = ingest or IngestConfig()
    entry = Path(cache_dir) / f"samples-{cache_key(source, mapping, task, sampling, ingest)}"
    if not (entry / "manifest.json").exists():
        log.info("building samples into %s", entry)
        samples, vocabulary, plan, report = build_prepared(source, mapping, task, sampling, ingest)
        _write_entry(entry, samples, vocabulary, plan, report)
        return PreparedSamples(samples, vocabulary, report["numeric_scaling"], plan, report, entry)
    log.info("reusing cached samples from %s", entry)
    manifest = json.loads((entry / "manifest.json").read_text())
    plan_raw = manifest["plan"]
    plan = CutoffPlan(
        train=tuple(plan_raw["train"]),
        val=tuple(plan_raw["val"]),
        test=tuple(plan_raw["test"]),
        horizon_seconds=plan_raw["horizon_seconds"],
    )
    return PreparedSamples(
        samples=pl.read_parquet(entry / "samples.parquet"),
        vocabulary=manifest["vocabulary"],
        numeric_scaling=manifest["report"]["numeric_scaling"],
        plan=plan,
        report=manifest["report"],
        cache_dir=entry,
    )
