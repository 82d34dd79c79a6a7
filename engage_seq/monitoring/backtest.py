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

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from engage_seq.cli.args import KeywordArgumentParser, parse_instant_arg
from engage_seq.common.errors import EngageSeqError
from engage_seq.common.times import format_instant, parse_duration, parse_instant
from engage_seq.data.encoding import Vocabulary, encode_samples, numeric_scaling_from_metadata
from engage_seq.data.ingest import FileEventSource
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import EventSchemaError
from engage_seq.data.sequences import samples_at_cutoff, user_histories
from engage_seq.data.splits import apply_eligibility, eligibility_rules
from engage_seq.data.tasks import HorizonTask
from engage_seq.data.validation import validate_events
from engage_seq.metrics.scores import score_probabilities
from engage_seq.reporting.section import json_safe
from engage_seq.serving.outputs import Writer, write_outputs
from engage_seq.serving.scoring import (
    ScoringError,
    column_mapping,
    ingest_config,
    load_scoring_artifact,
    predict_in_batches,
)

PLOTTED_METRICS = ("auroc", "auprc", "lift_top10", "ece")
TABLE_METRICS = ("auroc", "auprc", "logloss", "ece", "lift_top10")
ELIGIBILITY_KEYS = ("min_history_events", "active_within", "holdout_user_fraction")
PER_TARGET = (*TABLE_METRICS, "brier", "positive_rate", "mean_prediction")  # metric/<target>


class BacktestError(EngageSeqError, ValueError):
    """Bad input for engage-backtest; the message says what to change. Nothing was written."""


@dataclass
class BacktestResult:
    """One row per cutoff and the run's own test metrics for reference.

    Columns of ``rows``: ``cutoff`` (ISO), ``n_users`` (users scored: one sample each),
    ``n_candidates`` (users with an event before the cutoff) and ``dropped/<rule>`` (those the
    run's eligibility rules removed, by the first rule failed), ``positives/<target>``, then
    the metrics of `engage_seq.metrics.scores` (``auroc``, ``positive_rate``, ``ece``, ...). With
    several targets those are the macro mean over them and ``<metric>/<target>`` holds each
    target's value, the naming of the run's metrics.json; `target_rows` gives one target's.
    """

    rows: pl.DataFrame
    reference: dict[str, float]  # the training run's test/<metric>, without the prefix
    inputs: dict[str, Any]

    @property
    def targets(self) -> list[str]:
        """The artifact's targets, in output order (from the ``positives/<target>`` columns)."""
        columns = self.rows.columns
        return [c.removeprefix("positives/") for c in columns if c.startswith("positives/")]

    def target_rows(self, target: str) -> pl.DataFrame:
        """``cutoff``, ``n_users``, ``positives`` and the metrics of one target under their
        plain names (``auroc``, ...), whatever the number of targets."""
        if target not in self.targets:
            raise BacktestError(f"no target {target!r}; the targets are {self.targets}")
        suffix = "" if len(self.targets) == 1 else f"/{target}"
        columns = [m for m in PER_TARGET if f"{m}{suffix}" in self.rows.columns]
        return self.rows.select(
            "cutoff",
            "n_users",
            pl.col(f"positives/{target}").alias("positives"),
            *(pl.col(f"{m}{suffix}").alias(m) for m in columns),
        )

    def target_reference(self, target: str) -> dict[str, float]:
        """The run's test metrics of one target, under plain names."""
        if len(self.targets) == 1:
            return dict(self.reference)
        suffix = f"/{target}"
        return {k.removesuffix(suffix): v for k, v in self.reference.items() if k.endswith(suffix)}

    def macro_reference(self) -> dict[str, float]:
        """The run's macro means (the unsuffixed test metrics)."""
        return {k: v for k, v in self.reference.items() if "/" not in k}

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": json_safe(self.rows.to_dicts()),
            "training_test_metrics": self.reference,
            "inputs": self.inputs,
        }


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
    return SamplingConfig(
        **{k: recorded[k] for k in ELIGIBILITY_KEYS if recorded.get(k) is not None}
    )


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
    require_signed: bool | None = None,
) -> BacktestResult:
    """Metrics of ``artifact`` at successive cutoffs on the event table ``events`` (see the
    module docstring). ``start``: first cutoff (ISO or epoch seconds; default the run's last
    test cutoff); ``require_signed``: see `engage_seq.serving.scoring.load_scoring_artifact`. The
    first cutoff reproduces the run's test metrics only on the event table the run trained on;
    another table (a synthetic one with other ``days``) is another realisation of the data,
    not an extension of it."""
    module, metadata = _load(artifact, require_signed)
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
    vocabulary = Vocabulary.from_metadata(metadata)
    max_len = int(metadata["max_len"])
    sampling = eligibility(metadata)
    histories = user_histories(canonical.lazy()).collect().lazy()  # shared by every cutoff
    targets = list(task.targets)
    outputs = [list(metadata["output_names"]).index(t) for t in targets]
    rules = [name for name, _ in eligibility_rules(task, sampling)]
    rows = []
    for cutoff in cutoffs:
        samples = samples_at_cutoff(histories, task, cutoff, "backtest", max_len).collect()
        n_candidates = samples.height
        samples, dropped = apply_eligibility(samples, task, sampling)
        counts = {f"dropped/{r}": sum((dropped.get(r) or {}).values()) for r in rules}
        if samples.is_empty():
            raise BacktestError(
                f"no user is eligible at the cutoff {format_instant(cutoff)}: of "
                f"{n_candidates:,} with an event before it, dropped {_drop_text(counts)}"
            )
        encoded = encode_samples(
            samples,
            vocabulary,
            max_len,
            task.label_columns,
            numeric_scaling_from_metadata(metadata),
        )
        probabilities, _ = predict_in_batches(module, encoded, batch_size)
        labels = torch.tensor(encoded.labels)  # a copy: the array may be read-only
        metrics = score_probabilities(targets, torch.tensor(probabilities[:, outputs]), labels)
        metrics.pop("n_samples", None)  # = n_users: one sample per user and cutoff
        positives = {f"positives/{t}": int(labels[:, i].sum()) for i, t in enumerate(targets)}
        rows.append(
            {
                "cutoff": format_instant(cutoff),
                "n_users": len(encoded),
                "n_candidates": n_candidates,
                **counts,
                **positives,
                **metrics,
            }
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
        "rows_dropped": validated.report["rows_dropped"],  # per reason
        "numeric_missing": validated.report["numeric_missing"],  # kept, scaled as missing
        "categorical_missing": validated.report["categorical_missing"],  # kept, as "none"
        "users": validated.report["users"],
        "time_span": validated.report["time_span"],
        "task": task.name,
        "targets": targets,
        "horizon": task.horizon,
        "every": every,
        "eligibility": {k: getattr(sampling, k) for k in ELIGIBILITY_KEYS},
        "training_cutoffs": metadata.get("cutoffs"),
    }
    return BacktestResult(pl.DataFrame(rows), reference, inputs)


def _load(artifact: str | Path, require_signed: bool | None) -> tuple[Any, dict[str, Any]]:
    try:
        return load_scoring_artifact(artifact, require_signed=require_signed)
    except ScoringError as exc:
        raise BacktestError(str(exc)) from None


def _duration(value: str, what: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise BacktestError(f"{what}: {exc}") from None


def _first_cutoff(start: str | None, metadata: dict[str, Any]) -> int:
    first = parse_instant_arg(start, "start", BacktestError)
    if first is not None:
        return first
    test = (metadata.get("cutoffs") or {}).get("test") or []
    if not test:
        raise BacktestError("the artifact records no test cutoff; pass start=<ISO date>")
    return max(parse_instant(c) for c in test)


# --- outputs ------------------------------------------------------------------------------


def markdown(result: BacktestResult) -> str:
    """One table per target (a single one for a single target), a macro-mean table with
    several, then what was read and who was scored at each cutoff."""
    inputs = result.inputs
    targets = result.targets
    lines = [
        "# Rolling backtest",
        "",
        f"`{inputs['artifact']}` on `{inputs['events']}`: task {inputs['task']}"
        + (f" ({len(targets)} targets: {', '.join(targets)})" if len(targets) > 1 else "")
        + f", a cutoff every {inputs['every']}.",
    ]
    if len(targets) == 1:
        lines += ["", *_metric_table(result.target_rows(targets[0]))]
        lines += _reference_line("Training run's test split", result.reference)
    else:
        for target in targets:
            lines += ["", f"## {target}", "", *_metric_table(result.target_rows(target))]
            lines += _reference_line("Training run's test split", result.target_reference(target))
        macro = result.rows.select("cutoff", "n_users", *_macro_columns(result.rows))
        lines += [
            "",
            f"## Macro mean over the {len(targets)} targets",
            "",
            "Each cell is the unweighted mean of the targets' values above (the unsuffixed "
            "columns of backtest.csv/.json); the positive rate is the mean of theirs.",
            "",
            *_metric_table(macro),
        ]
        lines += _reference_line("Training run's test split (macro)", result.macro_reference())
    lines += ["", "## Inputs", "", *_input_lines(result)]
    return "\n".join(lines) + "\n"


def _macro_columns(rows: pl.DataFrame) -> list[str]:
    return [m for m in ("positive_rate", *TABLE_METRICS) if m in rows.columns]


def _metric_table(rows: pl.DataFrame) -> list[str]:
    """cutoff | users | (positives) | positive rate | the metrics, from plain-named columns."""
    metrics = [m for m in TABLE_METRICS if m in rows.columns]
    has_positives = "positives" in rows.columns
    header = ["cutoff", "users", *(["positives"] if has_positives else []), "positive rate"]
    header += metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows.iter_rows(named=True):
        cells = [row["cutoff"][:10], f"{row['n_users']:,}"]
        cells += [f"{row['positives']:,}"] if has_positives else []
        cells += [_cell(row["positive_rate"]), *(_cell(row[m]) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _reference_line(label: str, reference: dict[str, float]) -> list[str]:
    shown = ", ".join(
        f"{m} {reference[m]:.3f}" for m in ("positive_rate", *TABLE_METRICS) if m in reference
    )
    return ["", f"{label}: {shown}."] if shown else []


def _input_lines(result: BacktestResult) -> list[str]:
    """Rows read and kept on ingest (with the drop reasons), and per cutoff the users with an
    event before it, those the run's eligibility rules dropped, and those scored."""
    inputs = result.inputs
    lines = []
    if "rows_read" in inputs:
        dropped = {k: n for k, n in (inputs.get("rows_dropped") or {}).items() if n}
        reasons = f" (dropped: {_drop_text(dropped)})" if dropped else ""
        lines.append(
            f"- events: {inputs['rows_read']:,} rows read, {inputs['rows_kept']:,} kept"
            f"{reasons}; {inputs.get('users', 0):,} users"
        )
    if inputs.get("eligibility"):
        rules = ", ".join(f"{k}={v}" for k, v in inputs["eligibility"].items())
        lines.append(f"- eligibility: the run's rules ({rules})")
    rules = [c for c in result.rows.columns if c.startswith("dropped/")]
    if "n_candidates" not in result.rows.columns:
        return lines
    header = ["cutoff", "with an event before", *(f"dropped: {c[8:]}" for c in rules)]
    header.append("scored")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows.iter_rows(named=True):
        cells = [row["cutoff"][:10], f"{row['n_candidates']:,}"]
        cells += [f"{row[c]:,}" for c in rules] + [f"{row['n_users']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _drop_text(counts: dict[str, int]) -> str:
    shown = {k.removeprefix("dropped/"): n for k, n in counts.items() if n}
    return (
        ", ".join(f"{k} {n:,}" for k, n in sorted(shown.items(), key=lambda kv: -kv[1])) or "none"
    )


def _cell(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def write_backtest(result: BacktestResult, out: str | Path, plot: bool = True) -> dict[str, Path]:
    """backtest.csv / .json / .md (and .png) in ``out``, each atomically."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BacktestError(f"cannot write into {out}: it is a file, not a folder")
    files = {name: out / f"backtest.{name}" for name in ("csv", "json", "md")}
    writers: dict[Path, Writer] = {
        files["csv"]: result.rows.write_csv,
        files["md"]: lambda path: path.write_text(markdown(result)),
    }
    if plot:
        from engage_seq.monitoring.figures import plot_backtest, save_png

        files["png"] = out / "backtest.png"
        writers[files["png"]] = lambda path: save_png(plot_backtest(result), path)
    out.mkdir(parents=True, exist_ok=True)
    # one unit: backtest.json, renamed last, lists the SHA-256 of the other files
    write_outputs(files["csv"], writers, result.to_dict, manifest=files["json"])
    return files


def build_parser() -> KeywordArgumentParser:
    parser = KeywordArgumentParser(
        prog="engage-backtest",
        description="Evaluate an exported artifact at successive later cutoffs of an event "
        "table (labels from the training code's label definition) and plot the metrics over "
        "time, per target. Writes backtest.csv/.json/.md/.png. Exit status 0: written, 2: bad "
        "usage or input. Options may be given as key=value (artifact=model.pt) or --key value.",
    )
    parser.add_argument("--artifact", required=True, help="engage-export artifact")
    parser.add_argument("--events", required=True, help="event table: Parquet/CSV, dir or glob")
    parser.add_argument("--start", help="first cutoff, ISO date/time or epoch seconds "
                        "(default: the run's test cutoff)")  # fmt: skip
    parser.add_argument("--every", default="7d", help="step between cutoffs (default 7d)")
    parser.add_argument("--count", type=int, help="at most this many cutoffs")
    parser.add_argument("--out", default="backtest", help="output folder (default: backtest/)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-plot", action="store_true", help="skip backtest.png")
    parser.add_argument("--require-signed", action="store_true", default=None,
                        help="refuse an artifact without a valid <artifact>.sig (default: "
                        "ENGAGE_SEQ_REQUIRE_SIGNED)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # key=value tokens become options; usage: exit 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.batch_size < 1:
            raise BacktestError(f"--batch-size must be at least 1, got {args.batch_size}")
        result = rolling_backtest(
            args.artifact,
            args.events,
            args.start,
            args.every,
            args.count,
            args.batch_size,
            require_signed=args.require_signed,
        )
        write_backtest(result, args.out, plot=not args.no_plot)
    except (BacktestError, EventSchemaError, OSError, pl.exceptions.PolarsError) as exc:
        print(f"engage-backtest: error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(result))
    print(f"-> {Path(args.out) / 'backtest.md'}")
    return 0


def summary_text(result: BacktestResult) -> str:
    """What the command prints: a line per cutoff (and per target, with several, then the
    macro mean labelled as such) and the run's own test ROC-AUC."""
    targets = result.targets
    several = len(targets) > 1
    width = max(len(t) for t in [*targets, "macro mean"]) if several else 0
    lines = []
    for target in targets:
        for row in result.target_rows(target).iter_rows(named=True):
            lines.append(_summary_line(row, f"{target:<{width}}  " if several else ""))
    if several:
        for row in result.rows.iter_rows(named=True):
            lines.append(_summary_line(row, f"{'macro mean':<{width}}  "))
    if several:
        shown = [(t, result.target_reference(t).get("auroc")) for t in targets]
        shown.append(("macro mean", result.macro_reference().get("auroc")))
        known = [f"{t} {v:.3f}" for t, v in shown if v is not None]
        if known:
            lines.append(f"training test ROC-AUC: {', '.join(known)}")
    elif "auroc" in result.reference:
        lines.append(f"training test ROC-AUC {result.reference['auroc']:.3f}")
    return "\n".join(lines)


def _summary_line(row: dict[str, Any], label: str) -> str:
    return (
        f"{row['cutoff'][:10]}  {label}users {row['n_users']:>8,}  positive rate "
        f"{_cell(row['positive_rate'])}  ROC-AUC {_cell(row.get('auroc'))}  PR-AUC "
        f"{_cell(row.get('auprc'))}  ECE {_cell(row.get('ece'))}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
