"""`engage-backtest`: one trained model evaluated at successive later cutoffs — the retraining
signal.

For each cutoff (by default from the artifact's training test cutoff forward every ``every``,
while the label window ``[cutoff, cutoff + horizon)`` is fully inside the table), the inputs
and labels are built by the training code itself: `user_histories` once, then
`samples_at_cutoff` with the artifact's `HorizonTask` (the very label definition the model
was trained on), the run's eligibility rules (`apply_eligibility`), and `encode_samples` with
the artifact's vocabulary and scaling. The artifact scores them in length-sorted batches
(`engage_seq.serving.scoring.predict_in_batches`) and
`engage_seq.metrics.scores.score_probabilities` computes
the metrics the run reported, so a later drop is the model ageing, not a different yardstick.

The first point reproduces the run's test metrics only on the very event table the run trained
on (or one that extends it with later rows): another table covering the same dates is other
users and other events. In particular the synthetic generator with a different ``days`` (or
seed) draws a different realisation, not a longer copy of the same one, so a backtest on it
starts near, not at, the run's test metrics.

A multi-target artifact (``engagement_7d``) is reported per target; the unsuffixed metric
columns of `BacktestResult.rows` are then the macro mean over targets, as in the run's
metrics.json (``auroc`` = mean of ``auroc/<target>``), and every output labels them so.

Cutoffs closer together than the horizon give overlapping label windows: fine for a trend,
but neighbouring points are then not independent.

Exit status of the command: 0 written, 2 bad usage or input (as engage-drift and
engage-evaluate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from engage_seq.common.times import format_instant
from engage_seq.data.aggregates import with_aggregates
from engage_seq.data.build import apply_eligibility
from engage_seq.data.encoding import Vocabulary, encode_samples, ordered_numeric_scaling
from engage_seq.data.ingest import FileEventSource
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import EventSchemaError
from engage_seq.data.sequences import clean_events, samples_at_cutoff, user_histories
from engage_seq.data.splits import eligibility_rules
from engage_seq.data.tasks import HorizonTask
from engage_seq.data.validation import ValidatedEvents, validate_events
from engage_seq.metrics.scores import score_probabilities
from engage_seq.monitoring.backtest_result import BacktestResult, drop_text
from engage_seq.monitoring.backtest_schedule import (
    ELIGIBILITY_KEYS,
    backtest_cutoffs,
    eligibility,
    first_cutoff,
    horizon_task,
    step_seconds,
)
from engage_seq.monitoring.errors import BacktestError
from engage_seq.serving.aggregate_metadata import ServedAggregates, served_aggregates
from engage_seq.serving.contract import ArtifactMetadata
from engage_seq.serving.scoring import (
    ScoringError,
    column_mapping,
    ingest_config,
    open_scoring_artifact,
    predict_in_batches,
)


def rolling_backtest(
    artifact: str | Path,
    events: str | Path,
    start: str | None = None,
    every: str = "7d",
    count: int | None = None,
    batch_size: int = 4096,
    require_signed: bool | None = None,
) -> BacktestResult:
    """Metrics of ``artifact`` at successive cutoffs on the event table ``events`` (see the
    module docstring). ``start``: first cutoff (ISO or epoch seconds; default the run's last
    test cutoff); ``require_signed``: see `engage_seq.serving.scoring.open_scoring_artifact`. The
    first cutoff reproduces the run's test metrics only on the event table the run trained on;
    another table (a synthetic one with other ``days``) is another realisation of the data,
    not an extension of it."""
    module, meta = _load(artifact, require_signed)
    task = horizon_task(meta.task)
    step = step_seconds(every, "every")
    if count is not None and count < 1:
        raise BacktestError(f"count must be at least 1, got {count}")
    first = first_cutoff(start, (meta.cutoffs or {}).get("test") or [])
    source = FileEventSource(str(events), csv_string_columns=(column_mapping(meta).user_id,))
    validated, canonical = _read_events(source, meta)
    data_end = int(validated.ts_max) + 1
    cutoffs = backtest_cutoffs(first, step, task.horizon_seconds, data_end, count)
    if not cutoffs:
        raise BacktestError(
            f"no cutoff from {format_instant(first)} has a full {task.horizon} label window "
            f"before the end of {source.describe()} ({format_instant(data_end)}); pass an "
            "earlier start= or a longer table"
        )
    scorer = CutoffScorer.from_artifact(module, meta, task, batch_size)
    histories = user_histories(canonical.lazy()).collect().lazy()  # shared by every cutoff
    events = clean_events(canonical.lazy())  # for the full-history aggregates, if any
    rows = [scorer.score(histories, cutoff, events) for cutoff in cutoffs]
    inputs = {
        "artifact": str(artifact),
        "events": source.describe(),
        **_ingest_summary(validated),
        "task": task.name,
        "targets": list(task.targets),
        "horizon": task.horizon,
        "every": every,
        "eligibility": {k: getattr(scorer.sampling, k) for k in ELIGIBILITY_KEYS},
        "training_cutoffs": meta.cutoffs,
    }
    return BacktestResult(pl.DataFrame(rows), _training_test_metrics(meta), inputs)


@dataclass(frozen=True)
class CutoffScorer:
    """Everything fixed across cutoffs: the artifact, its task, the run's eligibility rules
    and encoding, and which of its outputs are the task's targets."""

    module: Any
    task: HorizonTask
    sampling: SamplingConfig
    vocabulary: Vocabulary
    scaling: dict[str, dict[str, float]]  # the run's attribute scaling, in the model's order
    max_len: int
    outputs: list[int]  # the targets' columns among the artifact's outputs
    batch_size: int
    aggregates: ServedAggregates  # the hybrid model's full-history aggregates (or none)

    @classmethod
    def from_artifact(
        cls, module: Any, meta: ArtifactMetadata, task: HorizonTask, batch_size: int
    ) -> CutoffScorer:
        return cls(
            module=module,
            task=task,
            sampling=eligibility(meta.recorded_config("data", "sampling")),
            vocabulary=Vocabulary.from_lists(meta.vocabulary, meta.categorical_attributes),
            scaling=ordered_numeric_scaling(meta.numeric_scaling, meta.numeric_attributes),
            max_len=meta.max_len,
            outputs=[meta.output_names.index(t) for t in task.targets],
            batch_size=batch_size,
            aggregates=served_aggregates(meta),
        )

    def score(self, histories: pl.LazyFrame, cutoff: int, events: pl.LazyFrame) -> dict[str, Any]:
        """One row: the users at ``cutoff`` (before and after the run's eligibility rules),
        the positives per target and the metrics of `score_probabilities`. ``events``: the
        clean events the histories hold, for the aggregates."""
        task, targets = self.task, list(self.task.targets)
        samples = samples_at_cutoff(histories, task, cutoff, "backtest", self.max_len)
        if self.aggregates.scaling:
            numeric = list(self.scaling)
            samples = with_aggregates(samples, events, cutoff, self.aggregates.targets, numeric)
        samples = samples.collect()
        n_candidates = samples.height
        samples, dropped = apply_eligibility(samples, task, self.sampling)
        rules = [name for name, _ in eligibility_rules(task, self.sampling)]
        counts = {f"dropped/{r}": sum((dropped.get(r) or {}).values()) for r in rules}
        if samples.is_empty():
            raise BacktestError(
                f"no user is eligible at the cutoff {format_instant(cutoff)}: of "
                f"{n_candidates:,} with an event before it, dropped {drop_text(counts)}"
            )
        encoded = encode_samples(
            samples,
            self.vocabulary,
            self.max_len,
            task.label_columns,
            self.scaling,
            aggregate_scaling=self.aggregates.scaling,
        )
        probabilities, _ = predict_in_batches(self.module, encoded, self.batch_size)
        labels = torch.tensor(encoded.labels)  # a copy: the array may be read-only
        chosen = torch.tensor(probabilities[:, self.outputs])  # (N, targets)
        metrics = score_probabilities(targets, chosen, labels)
        metrics.pop("n_samples", None)  # = n_users: one sample per user and cutoff
        positives = {f"positives/{t}": int(labels[:, i].sum()) for i, t in enumerate(targets)}
        return {
            "cutoff": format_instant(cutoff),
            "n_users": len(encoded),
            "n_candidates": n_candidates,
            **counts,
            **positives,
            **metrics,
        }


def _read_events(
    source: FileEventSource, meta: ArtifactMetadata
) -> tuple[ValidatedEvents, pl.DataFrame]:
    """The table validated with the artifact's column mapping and ingest rules, collected."""
    try:
        validated = validate_events(
            source.scan(), column_mapping(meta), ingest_config(meta), source.describe()
        )
        return validated, validated.events.collect()
    except EventSchemaError as exc:
        raise BacktestError(str(exc)) from None


def _ingest_summary(validated: ValidatedEvents) -> dict[str, Any]:
    report = validated.report
    return {
        "rows_read": report["rows_read"],
        "rows_kept": report["rows_kept"],
        "rows_dropped": report["rows_dropped"],  # per reason
        "rows_merged_same_instant": report["rows_merged_same_instant"],  # line items -> events
        "numeric_missing": report["numeric_missing"],  # kept, scaled as missing
        "categorical_missing": report["categorical_missing"],  # kept, as "none"
        "users": report["users"],
        "time_span": report["time_span"],
    }


def _training_test_metrics(meta: ArtifactMetadata) -> dict[str, float]:
    """The run's test/<metric> values recorded in the artifact, without the prefix."""
    recorded = meta.metrics or {}
    return {
        k.removeprefix("test/"): float(v)
        for k, v in recorded.items()
        if k.startswith("test/") and isinstance(v, (int, float))
    }


def _load(artifact: str | Path, require_signed: bool | None) -> tuple[Any, ArtifactMetadata]:
    try:
        return open_scoring_artifact(artifact, require_signed=require_signed)
    except ScoringError as exc:
        raise BacktestError(str(exc)) from None
