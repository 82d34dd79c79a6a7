"""`engage-backtest`: one trained model evaluated at successive later cutoffs — the retraining
signal.

For each cutoff (by default from the artifact's training test cutoff forward every ``every``,
while the label window ``[cutoff, cutoff + horizon)`` is fully inside the table), the inputs
and labels are built by the training code itself: `user_histories` once, then
`samples_at_cutoff` with the artifact's `HorizonTask` (the very label definition the model
was trained on), the run's eligibility rules (`apply_eligibility`), and `encode_samples` with
the artifact's vocabulary and scaling. The artifact scores them in length-sorted batches
(`engage_seq.score.predict_in_batches`) and `engage_seq.metrics.score_probabilities` computes
the metrics the run reported, so the first point on the training data reproduces the run's
test metrics and a later drop is the model ageing, not a different yardstick.

Cutoffs closer together than the horizon give overlapping label windows: fine for a trend,
but neighbouring points are then not independent.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from engage_seq.build import apply_eligibility
from engage_seq.drift import keyword_argv
from engage_seq.encoding import Vocabulary, encode_samples
from engage_seq.ingest import FileEventSource, validate_events
from engage_seq.io import atomic_path, write_json_atomic, write_text_atomic
from engage_seq.metrics import score_probabilities
from engage_seq.schema import EventSchemaError
from engage_seq.score import (
    ScoringError,
    column_mapping,
    ingest_config,
    load_scoring_artifact,
    predict_in_batches,
)
from engage_seq.sequences import (
    HorizonTask,
    SamplingConfig,
    format_instant,
    parse_duration,
    parse_instant,
    samples_at_cutoff,
    user_histories,
)

PLOTTED_METRICS = ("auroc", "auprc", "lift_top10", "ece")


class BacktestError(ValueError):
    """Bad input for engage-backtest; the message says what to change. Nothing was written."""


@dataclass
class BacktestResult:
    """One row per cutoff (``cutoff`` ISO, ``n_users``, ``positives/<t>``, the metrics) and
    the run's own test metrics for reference."""

    rows: pl.DataFrame
    reference: dict[str, float]  # the training run's test/<metric>, without the prefix
    inputs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [_json_safe_row(r) for r in self.rows.to_dicts()],
            "training_test_metrics": self.reference,
            "inputs": self.inputs,
        }


def _json_safe_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def horizon_task(metadata: dict[str, Any]) -> HorizonTask:
    """The artifact's horizon task (targets and horizon), as it was trained."""
    task = metadata.get("task") or {}
    targets = list(task.get("targets") or [])
    if not targets or not task.get("horizon"):
        raise BacktestError(
            "the artifact has no horizon target (task "
            f"{task.get('name')!r}); engage-backtest evaluates propensity models"
        )
    return HorizonTask(targets=tuple(targets), horizon=str(task["horizon"]), name=task["name"])


def eligibility(metadata: dict[str, Any]) -> SamplingConfig:
    """The run's eligibility settings (min history, activity window, held-out users), so the
    backtest scores the population the run's test split held."""
    recorded = ((metadata.get("config") or {}).get("data") or {}).get("sampling") or {}
    keys = ("min_history_events", "active_within", "holdout_user_fraction")
    return SamplingConfig(**{k: recorded[k] for k in keys if recorded.get(k) is not None})


def backtest_cutoffs(
    first: int, every: int, horizon: int, data_end: int, count: int | None = None
) -> list[int]:
    """``first``, ``first + every``, ... while ``cutoff + horizon <= data_end`` (exclusive end
    of the data), at most ``count`` of them."""
    last = data_end - horizon
    cutoffs = list(range(first, last + 1, every)) if first <= last else []
    return cutoffs[:count] if count is not None else cutoffs


def rolling_backtest(
    artifact: str | Path,
    events: str | Path,
    start: str | None = None,
    every: str = "7d",
    count: int | None = None,
    batch_size: int = 4096,
) -> BacktestResult:
    """Metrics of ``artifact`` at successive cutoffs on the event table ``events`` (see the
    module docstring). ``start``: first cutoff (ISO; default the run's last test cutoff)."""
    module, metadata = _load(artifact)
    task = horizon_task(metadata)
    step = _duration(every, "every")
    if count is not None and count < 1:
        raise BacktestError(f"count must be at least 1, got {count}")
    first = _first_cutoff(start, metadata)
    source = FileEventSource(str(events), csv_string_columns=(column_mapping(metadata).user_id,))
    try:
        validated = validate_events(
            source.scan(), column_mapping(metadata), ingest_config(metadata), source.describe()
        )
        canonical = validated.events.collect()
    except EventSchemaError as exc:
        raise BacktestError(str(exc)) from None
    data_end = int(validated.ts_max) + 1
    cutoffs = backtest_cutoffs(first, step, task.horizon_seconds, data_end, count)
    if not cutoffs:
        raise BacktestError(
            f"no cutoff from {format_instant(first)} has a full {task.horizon} label window "
            f"before the end of {source.describe()} ({format_instant(data_end)}); pass an "
            "earlier start= or a longer table"
        )
    vocabulary = Vocabulary.from_lists(metadata["vocabulary"])
    max_len = int(metadata["max_len"])
    sampling = eligibility(metadata)
    histories = user_histories(canonical.lazy()).collect().lazy()  # shared by every cutoff
    targets = list(task.targets)
    outputs = [list(metadata["output_names"]).index(t) for t in targets]
    rows = []
    for cutoff in cutoffs:
        samples = samples_at_cutoff(histories, task, cutoff, "backtest", max_len).collect()
        samples, _ = apply_eligibility(samples, task, sampling)
        if samples.is_empty():
            raise BacktestError(f"no user is eligible at the cutoff {format_instant(cutoff)}")
        encoded = encode_samples(
            samples, vocabulary, max_len, task.label_columns, metadata["numeric_scaling"]
        )
        probabilities, _ = predict_in_batches(module, encoded, batch_size)
        labels = torch.tensor(encoded.labels)  # a copy: the array may be read-only
        metrics = score_probabilities(targets, torch.tensor(probabilities[:, outputs]), labels)
        positives = {f"positives/{t}": int(labels[:, i].sum()) for i, t in enumerate(targets)}
        rows.append(
            {"cutoff": format_instant(cutoff), "n_users": len(encoded), **positives, **metrics}
        )
    recorded = metadata.get("metrics") or {}
    reference = {
        k.removeprefix("test/"): float(v)
        for k, v in recorded.items()
        if k.startswith("test/") and isinstance(v, (int, float))
    }
    inputs = {
        "artifact": str(artifact),
        "events": source.describe(),
        "rows_read": validated.report["rows_read"],
        "rows_kept": validated.report["rows_kept"],
        "users": validated.report["users"],
        "time_span": validated.report["time_span"],
        "task": task.name,
        "horizon": task.horizon,
        "every": every,
        "training_cutoffs": metadata.get("cutoffs"),
    }
    return BacktestResult(pl.DataFrame(rows), reference, inputs)


def _load(artifact: str | Path) -> tuple[Any, dict[str, Any]]:
    try:
        return load_scoring_artifact(artifact)
    except ScoringError as exc:
        raise BacktestError(str(exc)) from None


def _duration(value: str, what: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise BacktestError(f"{what}: {exc}") from None


def _first_cutoff(start: str | None, metadata: dict[str, Any]) -> int:
    if start is not None:
        try:
            return int(start) if start.lstrip("-").isdigit() else parse_instant(start)
        except ValueError:
            raise BacktestError(f"cannot read start {start!r}: give an ISO date/time") from None
    test = (metadata.get("cutoffs") or {}).get("test") or []
    if not test:
        raise BacktestError("the artifact records no test cutoff; pass start=<ISO date>")
    return max(parse_instant(c) for c in test)


# --- outputs ------------------------------------------------------------------------------


def markdown(result: BacktestResult) -> str:
    metric_columns = [m for m in ("auroc", "auprc", "logloss", "ece", "lift_top10") if m in
                      result.rows.columns]  # fmt: skip
    header = ["cutoff", "users", "positive rate", *metric_columns]
    lines = [
        "# Rolling backtest",
        "",
        f"`{result.inputs['artifact']}` on `{result.inputs['events']}`: task "
        f"{result.inputs['task']}, a cutoff every {result.inputs['every']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in result.rows.iter_rows(named=True):
        cells = [row["cutoff"][:10], f"{row['n_users']:,}", f"{row['positive_rate']:.3f}"]
        cells += [_cell(row[m]) for m in metric_columns]
        lines.append("| " + " | ".join(cells) + " |")
    if result.reference:
        shown = ", ".join(
            f"{m} {result.reference[m]:.3f}" for m in metric_columns if m in result.reference
        )
        lines += ["", f"Training run's test split: {shown}."]
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def write_backtest(result: BacktestResult, out: str | Path, plot: bool = True) -> dict[str, Path]:
    """backtest.csv / .json / .md (and .png) in ``out``, each atomically."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BacktestError(f"cannot write into {out}: it is a file, not a folder")
    files = {name: out / f"backtest.{name}" for name in ("csv", "json", "md")}
    with atomic_path(files["csv"]) as tmp:
        result.rows.write_csv(tmp)
    write_json_atomic(files["json"], result.to_dict())
    write_text_atomic(files["md"], markdown(result))
    if plot:
        from engage_seq.drift_figures import plot_backtest, save_png

        files["png"] = out / "backtest.png"
        save_png(plot_backtest(result), files["png"])
    return files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engage-backtest",
        description="Evaluate an exported artifact at successive later cutoffs of an event "
        "table (labels from the training code's label definition) and plot the metrics over "
        "time. Writes backtest.csv/.json/.md/.png. Options may be given as key=value "
        "(artifact=model.pt) or --key value.",
    )
    parser.add_argument("--artifact", required=True, help="engage-export artifact")
    parser.add_argument("--events", required=True, help="event table: Parquet/CSV, dir or glob")
    parser.add_argument("--start", help="first cutoff, ISO (default: the run's test cutoff)")
    parser.add_argument("--every", default="7d", help="step between cutoffs (default 7d)")
    parser.add_argument("--count", type=int, help="at most this many cutoffs")
    parser.add_argument("--out", default="backtest", help="output folder (default: backtest/)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-plot", action="store_true", help="skip backtest.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(keyword_argv(sys.argv[1:] if argv is None else argv, parser))
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.batch_size < 1:
            raise BacktestError(f"--batch-size must be at least 1, got {args.batch_size}")
        result = rolling_backtest(
            args.artifact, args.events, args.start, args.every, args.count, args.batch_size
        )
        write_backtest(result, args.out, plot=not args.no_plot)
    except (BacktestError, EventSchemaError, OSError, pl.exceptions.PolarsError) as exc:
        print(f"engage-backtest: error: {exc}", file=sys.stderr)
        return 1
    for row in result.rows.iter_rows(named=True):
        print(
            f"{row['cutoff'][:10]}  users {row['n_users']:>8,}  positive rate "
            f"{row['positive_rate']:.3f}  ROC-AUC {_cell(row['auroc'])}  PR-AUC "
            f"{_cell(row['auprc'])}  ECE {_cell(row['ece'])}"
        )
    if "auroc" in result.reference:
        print(f"training test ROC-AUC {result.reference['auroc']:.3f}")
    print(f"-> {Path(args.out) / 'backtest.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
