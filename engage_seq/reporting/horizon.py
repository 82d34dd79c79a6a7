"""The horizon part of a run report, one target at a time: the comparison rows (the run's
model, the baselines, the oracle, sibling runs), the model's curve tables (`TargetReport`), and
the section's markdown: the test and validation tables and the captions under its figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engage_seq.evaluation.results import RunEvaluation, Scorer, is_finite, metric_key
from engage_seq.metrics.scores import CALIBRATION_BINS
from engage_seq.reporting.calibration_text import reliability_lines
from engage_seq.reporting.curves import calibration_bins, captured_at_top, decile_table
from engage_seq.reporting.wording import (
    fmt,
    markdown_table,
    negatives_noun,
    one_class_reason,
    pct,
    positives_noun,
)

TABLE_METRICS = (  # (metric, column header, digits)
    ("auroc", "ROC-AUC", 4),
    ("auprc", "PR-AUC", 4),
    ("logloss", "log-loss", 4),
    ("brier", "Brier", 4),
    ("ece", "calibration error", 4),
    ("lift_top10", "lift @ top 10 %", 2),
)


@dataclass
class TargetReport:
    """One horizon target: its comparison rows and the model's curve tables (test)."""

    target: str
    rows: list[dict[str, Any]]  # one per scorer and sibling run: label, kind, metrics
    calibration: pl.DataFrame
    deciles: dict[str, pl.DataFrame]  # scorer label -> decile table
    captured_top10: dict[str, float]  # scorer label -> share of positives in the top 10 %
    score_means: dict[str, float]
    figures: dict[str, Path] = field(default_factory=dict)
    calibration_before: pl.DataFrame | None = None  # raw scores' bins, with post-hoc calibration


def target_column(scorer: Scorer, target: str) -> int | None:
    """The column of ``target`` in the scorer's horizon arrays; None if it does not predict it."""
    return scorer.targets.index(target) if target in scorer.targets else None


def _rows(evaluation: RunEvaluation, target: str) -> list[dict[str, Any]]:
    """Model, baselines by test ROC-AUC, oracle, then sibling runs (from their metrics.json)."""
    rows = []
    n_test = len(evaluation.splits["test"])
    for scorer in evaluation.scorers:
        if target_column(scorer, target) is None:
            continue
        values = {}
        for split in ("val", "test"):
            for metric, _, _ in TABLE_METRICS:
                key = f"{split}/{metric_key(metric, target, scorer.targets)}"
                values[f"{split}/{metric}"] = scorer.metrics.get(key, math.nan)
        rows.append({"name": scorer.name, "label": scorer.label, "kind": scorer.kind, **values})
    for sibling in evaluation.siblings:
        values = {
            f"{split}/{metric}": sibling.metrics.get(
                f"{split}/{metric_key(metric, target, evaluation.targets)}", math.nan
            )
            for split in ("val", "test")
            for metric, _, _ in TABLE_METRICS
        }
        label = f"{sibling.label}, run {sibling.name}"
        rows.append({"name": sibling.name, "label": label, "kind": "sibling run", **values})
    order = {"model": 0, "baseline": 1, "oracle": 2, "sibling run": 3}
    model_row, others = rows[0], rows[1:]
    others.sort(key=lambda r: (order[r["kind"]], -np.nan_to_num(r["test/auroc"], nan=-1.0)))
    for row in [model_row, *others]:
        row["test/captured_top10"] = captured_at_top(row["test/lift_top10"], n_test)
    return [model_row, *others]


def target_report(evaluation: RunEvaluation, target: str) -> TargetReport:
    test = evaluation.splits["test"]
    labels = test.horizon_labels[:, evaluation.targets.index(target)]
    deciles: dict[str, pl.DataFrame] = {}
    for scorer in evaluation.scorers:
        column = target_column(scorer, target)
        if column is None or "test" not in scorer.horizon:
            continue
        deciles[scorer.label] = decile_table(scorer.horizon["test"][:, column], labels)
    rows = _rows(evaluation, target)
    captured = {row["label"]: row["test/captured_top10"] for row in rows}
    model = evaluation.run.horizon["test"][:, target_column(evaluation.run, target) or 0]
    means = {
        positives_noun(target): float(model[labels >= 0.5].mean()) if labels.any() else math.nan,
        negatives_noun(target): float(model[labels < 0.5].mean())
        if (labels < 0.5).any()
        else math.nan,
    }
    report = TargetReport(target, rows, calibration_bins(model, labels), deciles, captured, means)
    raw = evaluation.run.uncalibrated.get("test")
    if raw is not None:
        column = target_column(evaluation.run, target) or 0
        report.calibration_before = calibration_bins(raw[:, column], labels)
    return report


def horizon_markdown(
    evaluation: RunEvaluation, report: TargetReport, report_dir: Path
) -> list[str]:
    """The section of one target: comparison tables, then each drawn figure with its caption."""
    return [*_comparison_tables(report), *_figure_captions(evaluation, report, report_dir)]


def _comparison_tables(report: TargetReport) -> list[str]:
    target = report.target
    positives = positives_noun(target)
    header = ["model", *(name for _, name, _ in TABLE_METRICS), "top 10 % capture"]
    test_rows = [
        [
            f"**{r['label']}** (this run)" if i == 0 else f"{r['label']}",
            *(fmt(r[f"test/{m}"], d) for m, _, d in TABLE_METRICS),
            pct(r["test/captured_top10"]),
        ]
        for i, r in enumerate(report.rows)
    ]
    val_rows = [
        [r["label"], *(fmt(r[f"val/{m}"], d) for m, _, d in TABLE_METRICS)]
        for r in report.rows
        if r["kind"] != "oracle"
    ]
    return [
        "Every row is scored on exactly the same test samples by the same metric code "
        "(`engage_seq.metrics.scores`). ROC-AUC: the chance that a random one of the "
        f"{positives} scores above a random one of the {negatives_noun(target)} (0.5 = random); "
        "PR-AUC: average "
        "precision; log-loss and Brier: error of the probabilities (lower is better); "
        f"calibration error: mean gap between predicted and observed rates "
        f"({CALIBRATION_BINS} bins); lift @ top 10 %: how many times more {positives} the top "
        "10 % by score hold than a random 10 %.",
        "",
        *markdown_table(header, test_rows),
        "",
        "Validation period (one window earlier; it chose the checkpoint and early-stopped "
        "the baselines):",
        "",
        *markdown_table(["model", *(name for _, name, _ in TABLE_METRICS)], val_rows),
        "",
    ]


def _image(report: TargetReport, report_dir: Path, name: str, alt: str, caption: str) -> list[str]:
    """A drawn figure and its caption; nothing where the figure was not drawn."""
    path = report.figures.get(name)
    if path is None:
        return []
    return [f"![{alt}]({path.relative_to(report_dir).as_posix()})", "", caption, ""]


def _figure_captions(
    evaluation: RunEvaluation, report: TargetReport, report_dir: Path
) -> list[str]:
    target = report.target
    positives = positives_noun(target)
    lines = _image(
        report,
        report_dir,
        f"ranking_{target}",
        "ROC and precision-recall curves",
        f"**Ranking.** Left: as the score threshold is lowered, the share of {positives} "
        "caught (up) against the share of everyone else flagged (right); the dotted diagonal is "
        "random. Right: of the users flagged, the share who really do it (precision) against "
        f"the share of all {positives} reached (recall); dotted: the base rate.",
    )
    lines += _image(
        report,
        report_dir,
        f"calibration_{target}",
        "reliability diagram",
        _calibration_caption(report),
    )
    lines += reliability_lines(evaluation, target)
    lines += _image(
        report,
        report_dir,
        f"gains_{target}",
        "cumulative gains and lift by decile",
        _gains_caption(evaluation, report),
    )
    means = report.score_means
    lines += _image(
        report,
        report_dir,
        f"scores_{target}",
        "score distribution by outcome",
        "**Score distribution.** Each group's histogram sums to 100 %. Mean predicted "
        + ", ".join(f"{name}: {fmt(value, 3)}" for name, value in means.items())
        + ".",
    )
    return lines


def _calibration_caption(report: TargetReport) -> str:
    used = report.calibration.filter(pl.col("n") > 0)
    top_bin = used.sort("n", descending=True).row(0, named=True) if used.height else None
    text = (
        f"**Calibration.** Users grouped by predicted probability ({CALIBRATION_BINS} "
        "equal-width bins, the ones the calibration error uses; n = users per bin). On the "
        "diagonal, a predicted 20 % means 20 % really do it, so scores can be read as "
        f"probabilities. Calibration error {fmt(report.rows[0]['test/ece'])}"
    )
    if top_bin is not None:
        text += (
            f"; the largest bin ({top_bin['n']:,} users, predicted {pct(top_bin['lower'], 0)}–"
            f"{pct(top_bin['upper'], 0)}) averages {pct(top_bin['mean_predicted'], 2)} "
            f"predicted vs {pct(top_bin['observed_rate'], 2)} observed."
        )
    return text


def _gains_caption(evaluation: RunEvaluation, report: TargetReport) -> str:
    target = report.target
    positives = positives_noun(target)
    model_row = report.rows[0]
    if not is_finite(model_row["test/captured_top10"]):
        rate = evaluation.splits["test"].horizon_labels[:, evaluation.targets.index(target)]
        reason = one_class_reason(float(rate.mean()) if rate.size else None, positives, "test")
        return f"**Gains and lift.** Undefined: {reason}."
    deciles = report.deciles[evaluation.run.label]
    return (
        f"**Gains and lift.** Users sorted by score, best first. Contacting the top 10 % "
        f"reaches {pct(model_row['test/captured_top10'])} of all {positives}, the top 30 % "
        f"{pct(deciles['cumulative_capture'][2])}; the top decile's rate is "
        f"{fmt(deciles['lift'][0], 2)}× the average, the bottom decile's "
        f"{fmt(deciles['lift'][-1], 2)}×."
    )
