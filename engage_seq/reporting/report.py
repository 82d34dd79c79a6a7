"""The per-run evaluation report: ``report.md`` + ``figures/*.png`` + ``report.json`` (every
number shown) + ``tables/*.csv``, and the same text and figures in the run's TensorBoard
(``tensorboard/report/``, next to the training curves).

`write_report` lays out what `engage_seq.evaluation.run_evaluation` computed: a plain-language
summary for
a marketing reader (what was predicted, for which period, how good against the baselines and
the oracle, what the top 10 % by score capture), the comparison table on the test period,
ROC/PR, calibration, gains/lift and score-distribution figures per horizon target, a
next-event section (accuracy table, confusion matrix) where the task has one, the optional
sections of other modules (explanations, segment fairness) and how to reproduce it all.
Curve numbers (calibration bins, deciles) are computed here, without matplotlib, so a report
without the ``plots`` extra still has every table.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torchmetrics.functional.classification import binary_precision_recall_curve, binary_roc

from engage_seq import __version__
from engage_seq.common.io import atomic_path, write_json_atomic, write_text_atomic
from engage_seq.common.safe_config import read_untrusted_yaml
from engage_seq.common.times import date_text, now_text, parse_duration, window_text
from engage_seq.data.cache import PreparedSamples
from engage_seq.data.sequences import horizon_part, next_event_part
from engage_seq.evaluation.run_evaluation import (
    EvaluatedSplit,
    EvaluationError,
    ReportOptions,
    RunEvaluation,
    Scorer,
    evaluate_run,
    is_finite,
    metric_key,
    options_from_config,
)
from engage_seq.metrics.scores import CALIBRATION_BINS, TOP_FRACTION
from engage_seq.reporting.section import ReportSection, json_safe

log = logging.getLogger(__name__)
REPORT_FORMAT_VERSION = 1
FIGURES_DIR = "figures"
TABLES_DIR = "tables"
TENSORBOARD_DIR = Path("tensorboard") / "report"
N_DECILES = 10
GAINS_POINTS = 401
TABLE_METRICS = (  # (metric, column header, digits)
    ("auroc", "ROC-AUC", 4),
    ("auprc", "PR-AUC", 4),
    ("logloss", "log-loss", 4),
    ("brier", "Brier", 4),
    ("ece", "calibration error", 4),
    ("lift_top10", "lift @ top 10 %", 2),
)
NEXT_EVENT_TABLE = (
    ("accuracy", "accuracy", 4),
    ("top3_accuracy", "top-3 accuracy", 4),
    ("macro_f1", "macro-F1", 4),
    ("nll", "NLL", 4),
)


# --- numbers behind the figures ----------------------------------------------------------------


def calibration_bins(probs: np.ndarray, labels: np.ndarray) -> pl.DataFrame:
    """The calibration error's own bins: `CALIBRATION_BINS` equal-width bins over [0, 1],
    assigned as torchmetrics does (``bucketize(right=True) - 1`` on float32, a probability of
    exactly 1 in an extra last bin), so the counts-weighted mean of ``gap`` is ``ece``."""
    p = torch.tensor(np.asarray(probs, dtype=np.float32))
    edges = torch.linspace(0, 1, CALIBRATION_BINS + 1, dtype=torch.float32)
    index = (torch.bucketize(p, edges, right=True) - 1).numpy()
    n_bins = CALIBRATION_BINS + 1
    count = np.bincount(index, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(index, weights=p.double().numpy(), minlength=n_bins)
    sum_y = np.bincount(index, weights=np.asarray(labels, dtype=np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, rate = sum_p / count, sum_y / count
    lower = np.append(edges.double().numpy()[:-1], 1.0)
    upper = np.append(edges.double().numpy()[1:], 1.0)
    frame = pl.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": lower,
            "upper": upper,
            "n": count,
            "mean_predicted": mean_p,
            "observed_rate": rate,
        }
    ).with_columns(
        (pl.col("observed_rate") - pl.col("mean_predicted")).alias("gap"),
    )
    return frame.filter((pl.col("bin") < CALIBRATION_BINS) | (pl.col("n") > 0)).fill_nan(None)


def ranking_order(probs: np.ndarray) -> np.ndarray:
    """Rows best score first, ties in row order (the stable sort `lift_at_top` uses)."""
    return np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")


def decile_table(probs: np.ndarray, labels: np.ndarray) -> pl.DataFrame:
    """Per score decile (1 = highest scores): users, positives, rate, lift over the average,
    and the cumulative share of all positives captured down to that decile."""
    order = ranking_order(probs)
    y = np.asarray(labels, dtype=np.float64)[order]
    parts = np.array_split(np.arange(y.size), N_DECILES)
    n = np.array([p.size for p in parts])
    positives = np.array([y[p].sum() for p in parts])
    base = y.mean() if y.size else math.nan
    rate = positives / np.maximum(n, 1)
    return pl.DataFrame(
        {
            "decile": np.arange(1, N_DECILES + 1),
            "n": n,
            "positives": positives.astype(np.int64),
            "rate": rate,
            "lift": rate / base if base > 0 else np.full(N_DECILES, np.nan),
            "cumulative_capture": np.cumsum(positives) / max(y.sum(), 1.0),
        }
    )


def gains_curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of users contacted, share of positives reached), best scores first."""
    y = np.asarray(labels, dtype=np.float64)[ranking_order(probs)]
    reached = np.concatenate([[0.0], np.cumsum(y)]) / max(y.sum(), 1.0)
    contacted = np.arange(y.size + 1) / max(y.size, 1)
    keep = np.unique(np.linspace(0, y.size, GAINS_POINTS).round().astype(np.int64))
    return contacted[keep], reached[keep]


def captured_at_top(lift: float, n: int, fraction: float = TOP_FRACTION) -> float:
    """Share of all positives in the top ``fraction`` by score, from ``lift_top10`` itself
    (lift = precision@k / base rate, k = ceil(fraction * n)), so text and metric agree."""
    k = max(1, math.ceil(fraction * n))
    return lift * k / n if n else math.nan


def _roc_pr(probs: np.ndarray, labels: np.ndarray) -> tuple[tuple[np.ndarray, ...], ...]:
    p = torch.tensor(np.asarray(probs, dtype=np.float32))
    y = torch.tensor(np.asarray(labels)).long()
    fpr, tpr, _ = binary_roc(p, y)
    precision, recall, _ = binary_precision_recall_curve(p, y)
    return (fpr.numpy(), tpr.numpy()), (recall.numpy(), precision.numpy())


# --- words -------------------------------------------------------------------------------------


def _words(name: str) -> str:
    return name.replace("_", " ")


def positives_noun(target: str) -> str:
    """'buyers' for purchase; 'users with an email click' otherwise."""
    if target == "purchase":
        return "buyers"
    words = _words(target)
    article = "an" if words[:1] in "aeiou" else "a"
    return f"users with {article} {words}"


def negatives_noun(target: str) -> str:
    return "non-buyers" if target == "purchase" else f"users without {_words(target)}"


def _fmt(value: float | None, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if is_finite(value) else "—"


def _pct(value: float | None, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f} %" if is_finite(value) else "—"


def period_text(split: EvaluatedSplit, window_seconds: int) -> str:
    """'users with an event before 2026-04-27; outcomes 2026-04-27 to 2026-05-04 (UTC)'."""
    first, last = min(split.cutoffs), max(split.cutoffs)
    if first == last:
        return (
            f"users with any event before {date_text(first)}, outcomes counted from "
            f"{date_text(first)} to {date_text(first + window_seconds)} (UTC)"
        )
    return (
        f"{len(split.cutoffs)} cutoffs from {date_text(first)} to {date_text(last)}, each with the "
        f"following {window_text(window_seconds)} as its outcome window (UTC)"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


# --- the horizon part --------------------------------------------------------------------------


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


def _column(scorer: Scorer, target: str) -> int | None:
    return scorer.targets.index(target) if target in scorer.targets else None


def _rows(evaluation: RunEvaluation, target: str) -> list[dict[str, Any]]:
    """Model, baselines by test ROC-AUC, oracle, then sibling runs (from their metrics.json)."""
    rows = []
    n_test = len(evaluation.splits["test"])
    for scorer in evaluation.scorers:
        if _column(scorer, target) is None:
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
        column = _column(scorer, target)
        if column is None or "test" not in scorer.horizon:
            continue
        deciles[scorer.label] = decile_table(scorer.horizon["test"][:, column], labels)
    rows = _rows(evaluation, target)
    captured = {row["label"]: row["test/captured_top10"] for row in rows}
    model = evaluation.run.horizon["test"][:, _column(evaluation.run, target) or 0]
    means = {
        positives_noun(target): float(model[labels >= 0.5].mean()) if labels.any() else math.nan,
        negatives_noun(target): float(model[labels < 0.5].mean())
        if (labels < 0.5).any()
        else math.nan,
    }
    return TargetReport(target, rows, calibration_bins(model, labels), deciles, captured, means)


def _horizon_figures(
    evaluation: RunEvaluation, report: TargetReport, figures_dir: Path
) -> dict[str, Path]:
    from engage_seq.reporting.figures import (
        Curve,
        plot_calibration,
        plot_gains,
        plot_ranking,
        plot_score_distribution,
        save_figure,
    )

    target = report.target
    test = evaluation.splits["test"]
    labels = test.horizon_labels[:, evaluation.targets.index(target)]
    by_label = {row["label"]: row for row in report.rows}
    roc, pr, gains, lifts = [], [], [], []
    for scorer in evaluation.scorers:
        column = _column(scorer, target)
        if column is None or "test" not in scorer.horizon:
            continue
        probs = scorer.horizon["test"][:, column]
        row = by_label[scorer.label]
        (fpr, tpr), (recall, precision) = _roc_pr(probs, labels)
        roc.append(Curve(f"{scorer.label}: {_fmt(row['test/auroc'], 3)}", scorer.kind, fpr, tpr))
        pr.append(
            Curve(f"{scorer.label}: {_fmt(row['test/auprc'], 3)}", scorer.kind, recall, precision)
        )
        contacted, reached = gains_curve(probs, labels)
        gains.append(Curve(scorer.label, scorer.kind, contacted, reached))
        table = report.deciles[scorer.label]
        lifts.append(
            Curve(scorer.label, scorer.kind, table["decile"].to_numpy(), table["lift"].to_numpy())
        )
    positive_rate = float(labels.mean())
    what = f"P({_words(target)} within {window_text(evaluation.horizon_seconds or 0)})"
    positives, negatives = positives_noun(target), negatives_noun(target)
    model_row = report.rows[0]
    out = {}
    figure = plot_ranking(
        roc, pr, positive_rate, f"{what}: ranking on the test period (legend: AUC)",
        positives, negatives,
    )  # fmt: skip
    out[f"ranking_{target}"] = save_figure(figure, figures_dir / f"ranking_{target}.png")
    figure = plot_calibration(
        report.calibration,
        model_row["test/ece"],
        f"{what}: calibration of {evaluation.run.label} on the test period",
        positives,
    )
    out[f"calibration_{target}"] = save_figure(figure, figures_dir / f"calibration_{target}.png")
    figure = plot_gains(
        gains,
        lifts,
        model_row["test/captured_top10"],
        positive_rate,
        positives,
        f"{what}: who to contact first (test period)",
    )
    out[f"gains_{target}"] = save_figure(figure, figures_dir / f"gains_{target}.png")
    figure = plot_score_distribution(
        evaluation.run.horizon["test"][:, _column(evaluation.run, target) or 0],
        labels,
        positives,
        negatives,
        f"{what}: scores of {positives} and {negatives} ({evaluation.run.label}, test period)",
    )
    out[f"scores_{target}"] = save_figure(figure, figures_dir / f"scores_{target}.png")
    return out


def _horizon_markdown(
    evaluation: RunEvaluation, report: TargetReport, figures_dir: Path, report_dir: Path
) -> list[str]:
    target = report.target
    positives = positives_noun(target)
    header = ["model", *(name for _, name, _ in TABLE_METRICS), "top 10 % capture"]
    test_rows = [
        [
            f"**{r['label']}** (this run)" if i == 0 else f"{r['label']}",
            *(_fmt(r[f"test/{m}"], d) for m, _, d in TABLE_METRICS),
            _pct(r["test/captured_top10"]),
        ]
        for i, r in enumerate(report.rows)
    ]
    val_rows = [
        [r["label"], *(_fmt(r[f"val/{m}"], d) for m, _, d in TABLE_METRICS)]
        for r in report.rows
        if r["kind"] != "oracle"
    ]
    lines = [
        "Every row is scored on exactly the same test samples by the same metric code "
        "(`engage_seq.metrics.scores`). ROC-AUC: the chance that a random one of the "
        f"{positives} scores above a random one of the {negatives_noun(target)} (0.5 = random); "
        "PR-AUC: average "
        "precision; log-loss and Brier: error of the probabilities (lower is better); "
        f"calibration error: mean gap between predicted and observed rates "
        f"({CALIBRATION_BINS} bins); lift @ top 10 %: how many times more {positives} the top "
        "10 % by score hold than a random 10 %.",
        "",
        *_table(header, test_rows),
        "",
        "Validation period (one window earlier; it chose the checkpoint and early-stopped "
        "the baselines):",
        "",
        *_table(["model", *(name for _, name, _ in TABLE_METRICS)], val_rows),
        "",
    ]

    def image(name: str, alt: str, caption: str) -> list[str]:
        path = report.figures.get(name)
        if path is None:
            return []
        return [f"![{alt}]({path.relative_to(report_dir).as_posix()})", "", caption, ""]

    model_row = report.rows[0]
    used = report.calibration.filter(pl.col("n") > 0)
    top_bin = used.sort("n", descending=True).row(0, named=True) if used.height else None
    lines += image(
        f"ranking_{target}",
        "ROC and precision-recall curves",
        f"**Ranking.** Left: as the score threshold is lowered, the share of {positives} "
        "caught (up) against the share of everyone else flagged (right); the dotted diagonal is "
        "random. Right: of the users flagged, the share who really do it (precision) against "
        f"the share of all {positives} reached (recall); dotted: the base rate.",
    )
    calibration_text = (
        f"**Calibration.** Users grouped by predicted probability ({CALIBRATION_BINS} "
        "equal-width bins, the ones the calibration error uses; n = users per bin). On the "
        "diagonal, a predicted 20 % means 20 % really do it, so scores can be read as "
        f"probabilities. Calibration error {_fmt(model_row['test/ece'])}"
    )
    if top_bin is not None:
        calibration_text += (
            f"; the largest bin ({top_bin['n']:,} users, predicted {_pct(top_bin['lower'], 0)}–"
            f"{_pct(top_bin['upper'], 0)}) averages {_pct(top_bin['mean_predicted'], 2)} "
            f"predicted vs {_pct(top_bin['observed_rate'], 2)} observed."
        )
    lines += image(f"calibration_{target}", "reliability diagram", calibration_text)
    deciles = report.deciles[evaluation.run.label]
    gains_text = (
        f"**Gains and lift.** Users sorted by score, best first. Contacting the top 10 % "
        f"reaches {_pct(model_row['test/captured_top10'])} of all {positives}, the top 30 % "
        f"{_pct(deciles['cumulative_capture'][2])}; the top decile's rate is "
        f"{_fmt(deciles['lift'][0], 2)}× the average, the bottom decile's "
        f"{_fmt(deciles['lift'][-1], 2)}×."
    )
    if not is_finite(model_row["test/captured_top10"]):
        rate = evaluation.splits["test"].horizon_labels[:, evaluation.targets.index(target)]
        reason = _one_class_reason(float(rate.mean()) if rate.size else None, positives, "test")
        gains_text = f"**Gains and lift.** Undefined: {reason}."
    lines += image(f"gains_{target}", "cumulative gains and lift by decile", gains_text)
    means = report.score_means
    lines += image(
        f"scores_{target}",
        "score distribution by outcome",
        "**Score distribution.** Each group's histogram sums to 100 %. Mean predicted "
        + ", ".join(f"{name}: {_fmt(value, 3)}" for name, value in means.items())
        + ".",
    )
    return lines


# --- the next-event part -----------------------------------------------------------------------


def _next_event_rows(evaluation: RunEvaluation) -> list[dict[str, Any]]:
    rows = []
    for scorer in evaluation.scorers:
        if "test" not in scorer.next_event:
            continue
        values = {
            f"{split}/{m}": scorer.metrics.get(f"{split}/{m}", math.nan)
            for split in ("val", "test")
            for m, _, _ in NEXT_EVENT_TABLE
        }
        rows.append({"name": scorer.name, "label": scorer.label, "kind": scorer.kind, **values})
    for sibling in evaluation.siblings:
        values = {
            f"{split}/{m}": sibling.metrics.get(f"{split}/{m}", math.nan)
            for split in ("val", "test")
            for m, _, _ in NEXT_EVENT_TABLE
        }
        label = f"{sibling.label}, run {sibling.name}"
        rows.append({"name": sibling.name, "label": label, "kind": "sibling run", **values})
    return rows


def confusion_counts(probs: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts: rows the true next event, columns the most likely one (masked: -1)."""
    keep = classes >= 0
    flat = classes[keep] * n_classes + probs[keep].argmax(axis=1)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_table(counts: np.ndarray, names: Sequence[str]) -> pl.DataFrame:
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    hits = np.diag(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = hits / predicted
        recall = hits / support
        f1 = 2 * hits / (support + predicted)
    return pl.DataFrame(
        {
            "event": list(names),
            "support": support,
            "predicted": predicted,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    ).fill_nan(None)


# --- sections from other modules ----------------------------------------------------------------


def _relink(section: ReportSection, figures_dir: Path, report_dir: Path) -> ReportSection:
    """Point a section's bare figure names (``![..](x.png)``) at ``figures/x.png``."""
    markdown = section.markdown
    for path in section.figures.values():
        path = Path(path)
        try:
            relative = path.resolve().relative_to(report_dir.resolve()).as_posix()
        except ValueError:
            continue
        markdown = re.sub(rf"\]\({re.escape(path.name)}\)", f"]({relative})", markdown)
    section.markdown = markdown
    return section


def explain_section(
    evaluation: RunEvaluation, options: ReportOptions, figures_dir: Path
) -> ReportSection | str:
    """`engage_seq.evaluation.explain` on the test split's first target, or why it is not there."""
    test = evaluation.splits["test"]
    if evaluation.model is None or test.encoded is None:
        return "explanations need a sequence model; this is a baseline run"
    if not evaluation.targets:
        return "explanations cover horizon targets; this task has none"
    from engage_seq.reporting.explain_section import explain_report_section

    target = evaluation.targets[0]
    return explain_report_section(
        evaluation.model,
        test.encoded,
        test.frame,
        evaluation.vocabulary,
        evaluation.run.horizon["test"][:, 0],
        figures_dir,
        target_index=0,
        target_name=target,
        n_explain=options.n_explain,
    )


def fairness_section(
    evaluation: RunEvaluation, options: ReportOptions, figures_dir: Path, report_dir: Path
) -> ReportSection | str:
    """`engage_seq.evaluation.fairness` by ``options.segments`` on the test split's first target."""
    if not options.segments:
        return "no segments configured (report.segments)"
    if not evaluation.targets:
        return "segment fairness covers horizon targets; this task has none"
    from hydra.utils import instantiate

    from engage_seq.evaluation.segments import DERIVED_SEGMENTS, segment_frame
    from engage_seq.reporting.fairness_section import fairness_report_section

    derived = [s for s in options.segments if s in DERIVED_SEGMENTS]
    declared = [s for s in options.segments if s not in DERIVED_SEGMENTS]
    cfg = evaluation.config
    test = evaluation.splits["test"]
    missing: dict[str, str] = {}  # declared columns the table lacks now: skipped, not fatal
    segments = segment_frame(
        test.frame,
        source=instantiate(cfg.data.source) if declared else None,
        mapping=instantiate(cfg.data.columns) if declared else None,
        ingest=instantiate(cfg.data.ingest) if declared else None,
        columns=declared,
        derived=derived,
        missing=missing,
    )
    shown = [s for s in options.segments if s not in missing]
    reasons = list(dict.fromkeys(missing.values()))  # one message names every missing column
    if not shown:
        return "; ".join(reasons)
    notes = [f"{r[:1].upper()}{r[1:]} Skipped here; the other segments are shown." for r in reasons]
    scores = segments.with_columns(
        pl.Series("score", evaluation.run.horizon["test"][:, 0]),
        pl.Series("label", test.horizon_labels[:, 0]),
    )
    target = evaluation.targets[0]
    overall = {
        name: evaluation.run.metrics[f"test/{metric_key(name, target, evaluation.targets)}"]
        for name in ("auroc", "positive_rate", "mean_prediction")
    }
    section = fairness_report_section(
        scores,
        shown,
        overall,
        figures_dir,
        report_dir=report_dir,
        title=f"Segment fairness: P({_words(target)})",
        notes=notes,
    )
    section.summary["skipped_columns"] = sorted(missing)
    return section


def _run_section(
    name: str, build: Callable[[], ReportSection | str], skipped: dict[str, str]
) -> ReportSection | None:
    """A section, or None with the reason in ``skipped``: a failing section never costs the
    rest of the report."""
    started = time.perf_counter()
    try:
        result = build()
    except ImportError as error:
        skipped[name] = f"not available: {error}"
        return None
    except Exception as error:
        log.exception("report: the %s section failed", name)
        skipped[name] = f"failed: {type(error).__name__}: {error}"
        return None
    if isinstance(result, str):
        skipped[name] = result
        return None
    result.summary.setdefault("seconds", round(time.perf_counter() - started, 2))
    return result


# --- the report --------------------------------------------------------------------------------


def _best(rows: Sequence[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    found = [r for r in rows if r["kind"] == kind and is_finite(r["test/auroc"])]
    return max(found, key=lambda r: r["test/auroc"]) if found else None


def _horizon_summary(
    evaluation: RunEvaluation, report: TargetReport
) -> tuple[list[str], dict[str, Any]]:
    """The opening paragraphs (first target) and their numbers for report.json."""
    test = evaluation.splits["test"]
    target = report.target
    model = report.rows[0]
    metrics = evaluation.run.metrics
    rate = metrics.get(f"test/{metric_key('positive_rate', target, evaluation.targets)}")
    mean_prediction = metrics.get(
        f"test/{metric_key('mean_prediction', target, evaluation.targets)}"
    )
    baseline, oracle = _best(report.rows, "baseline"), _best(report.rows, "oracle")
    positives = positives_noun(target)
    window = evaluation.horizon_seconds or 0
    auroc = model["test/auroc"]
    text = (
        f"**What it predicts.** How likely each user is to **{_words(target)} within "
        f"{window_text(window)}** of a cutoff date. **Tested on** {period_text(test, window)}: "
        f"{len(test):,} users, {_pct(rate)} of them {positives}."
    )
    undefined = _one_class_reason(rate, positives, "test")
    if is_finite(auroc):
        quality = (
            f"**How good.** It ranks a random one of the {positives} above a random one of the "
            f"{negatives_noun(target)} {_pct(auroc)} of the time (ROC-AUC {_fmt(auroc, 3)})"
        )
    else:
        quality = f"**How good.** ROC-AUC is undefined: {undefined}, so ranking is not measured"
    other = "other " if evaluation.model is None else ""  # a baseline run's own report
    if baseline is not None and is_finite(auroc):
        gap = auroc - baseline["test/auroc"]
        quality += (
            f", {'ahead of' if gap >= 0 else 'behind'} the best {other}baseline, "
            f"{baseline['label']} ({_fmt(baseline['test/auroc'], 3)}, {gap:+.3f})"
        )
    if oracle is not None and is_finite(auroc):
        quality += (
            f"; the oracle, the best any model can do on this synthetic data, reaches "
            f"{_fmt(oracle['test/auroc'], 3)} ({auroc - oracle['test/auroc']:+.3f} to go)"
        )
    quality += "."
    if is_finite(model["test/captured_top10"]):
        action = (
            f"**Who to contact.** The top 10 % of users by score hold "
            f"**{_pct(model['test/captured_top10'])} of all {positives}**, "
            f"{_fmt(model['test/lift_top10'], 1)}× as many as a random 10 %"
        )
        if baseline is not None and is_finite(baseline["test/captured_top10"]):
            action += (
                f" ({baseline['label']}: {_pct(baseline['test/captured_top10'])}, "
                f"{_fmt(baseline['test/lift_top10'], 1)}×)"
            )
        action += "."
    else:
        action = f"**Who to contact.** The top 10 % capture is undefined: {undefined}."
    ece = model["test/ece"]
    if is_finite(ece):
        calibrated = (
            f"**Can the scores be read as probabilities?** Predicted rates differ from the "
            f"observed ones by {_fmt(ece * 100, 2)} percentage points on average (calibration "
            f"error {_fmt(ece)}; mean prediction {_pct(mean_prediction, 2)} vs {_pct(rate, 2)} "
            "observed)."
        )
    else:
        calibrated = (
            "**Can the scores be read as probabilities?** The calibration error is not "
            "available for the test period."
        )
    val_auroc = model["val/auroc"]
    val_rate = metrics.get(f"val/{metric_key('positive_rate', target, evaluation.targets)}")
    val_text = (
        f"ROC-AUC was {_fmt(val_auroc, 3)}"
        if is_finite(val_auroc)
        else f"ROC-AUC was undefined: {_one_class_reason(val_rate, positives, 'validation')}"
    )
    val = (
        f"On the validation period ({period_text(evaluation.splits['val'], window)}), which "
        f"chose the checkpoint, {val_text}."
    )
    summary = {
        "target": target,
        "horizon_seconds": evaluation.horizon_seconds,
        "n_test": len(test),
        "positive_rate": rate,
        "mean_prediction": mean_prediction,
        "auroc": auroc,
        "auprc": model["test/auprc"],
        "ece": ece,
        "lift_top10": model["test/lift_top10"],
        "captured_top10": model["test/captured_top10"],
        "val_auroc": model["val/auroc"],
        "best_baseline": baseline["label"] if baseline else None,
        "best_baseline_auroc": baseline["test/auroc"] if baseline else None,
        "best_baseline_captured_top10": baseline["test/captured_top10"] if baseline else None,
        "oracle_auroc": oracle["test/auroc"] if oracle else None,
    }
    return [text, "", quality, "", action, "", calibrated, "", val], summary


def _one_class_reason(rate: float | None, positives: str, period: str) -> str:
    """Why a ranking figure (ROC-AUC, lift) is undefined: the period has one class only."""
    if is_finite(rate) and rate == 0:
        return f"no {positives} in the {period} period"
    if is_finite(rate) and rate == 1:
        return f"every user of the {period} period is one of the {positives}"
    return f"the {period} period has only one outcome class"


def _next_event_summary(evaluation: RunEvaluation, rows: list[dict[str, Any]]) -> list[str]:
    test = evaluation.splits["test"]
    next_event = next_event_part(evaluation.task)
    assert next_event is not None
    window = parse_duration(next_event.max_gap)
    model = rows[0]
    n = int((test.next_classes >= 0).sum())
    text = (
        f"**Next event.** Which kind of event each user does next, among "
        f"{len(evaluation.next_event_classes) - 1} event types, for users whose next event "
        f"comes within {window_text(window)}. On the test period ({n:,} such users), the "
        f"model's first guess is right {_pct(model['test/accuracy'])} of the time and the "
        f"right type is among its top three {_pct(model['test/top3_accuracy'])} of the time"
    )
    baselines = [r for r in rows if r["kind"] == "baseline"]
    if baselines:
        best = max(baselines, key=lambda r: np.nan_to_num(r["test/accuracy"], nan=-1.0))
        text += f" ({best['label']}: {_pct(best['test/accuracy'])} first-guess accuracy)"
    return [text + "."]


def _reproduce(evaluation: RunEvaluation, out_dir: Path, options: ReportOptions) -> list[str]:
    """[the engage-evaluate command that rebuilds this very report, the engage-train command
    of the run (only when Hydra left ``.hydra/overrides.yaml``)]. engage-evaluate starts from
    the run's own ``report:`` block, so only settings that differ from it become flags."""
    from engage_seq.cli.evaluate import flags_for

    run = evaluation.run_dir
    try:
        trained = options_from_config(evaluation.config)
    except (EvaluationError, ValueError):  # a bad block fails engage-evaluate with its reason
        trained = ReportOptions()
    words = ["engage-evaluate", str(run)]
    if out_dir.resolve() != run.resolve():
        words += ["--out", str(out_dir)]
    commands = [" ".join(shlex.quote(w) for w in [*words, *flags_for(options, trained)])]
    overrides = run / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        try:  # a run folder's file: size/alias limits before parsing
            listed = read_untrusted_yaml(overrides) or []
        except ValueError as error:  # UnsafeConfigError or not YAML: only this line is lost
            log.warning("report: no engage-train command: %s", error)
            return commands
        train = " ".join(["engage-train", *(shlex.quote(str(o)) for o in listed)])
        commands.append(train)
    return commands


def reproduce_intro(commands: Sequence[str]) -> str:
    """The sentence above the commands, worded by which of them there are."""
    if len(commands) > 1:
        return "Rebuild this report (first line); train the run again (second line):"
    return (
        "Rebuild this report (the training command is not known: the run folder has no "
        "`.hydra/overrides.yaml`):"
    )


def _write_table(frame: pl.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp)
    return path


def _log_to_tensorboard(logdir: Path, markdown: str, figures: dict[str, Path]) -> None:
    """Report text and PNGs as one TensorBoard page next to the training curves; a rebuild
    replaces the previous page rather than adding a second copy."""
    import matplotlib.image
    from torch.utils.tensorboard import SummaryWriter

    for old in logdir.glob("events.out.tfevents.*"):
        old.unlink()
    with SummaryWriter(log_dir=str(logdir)) as writer:
        writer.add_text("report", markdown)
        for name, path in figures.items():
            pixels = matplotlib.image.imread(path)[..., :3]
            writer.add_image(f"report/{name}", pixels, dataformats="HWC")


def write_report(
    run_dir: str | Path,
    evaluation: RunEvaluation | None = None,
    *,
    options: ReportOptions | None = None,
    out_dir: str | Path | None = None,
    prepared: PreparedSamples | None = None,
) -> Path:
    """Evaluate ``run_dir`` (unless ``evaluation`` is given) and write its report into
    ``out_dir`` (default: the run folder). Returns the path of ``report.md``."""
    started = time.perf_counter()
    options = options or ReportOptions()
    earlier = 0.0  # evaluation time spent before this call, when it was passed in
    if evaluation is None:
        evaluation = evaluate_run(run_dir, options, prepared)
    else:
        earlier = evaluation.timings.get("evaluate", 0.0)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    figures_dir, tables_dir = out / FIGURES_DIR, out / TABLES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    skipped = dict(evaluation.skipped)
    notes = list(evaluation.notes)
    figures: dict[str, Path] = {}
    tables: dict[str, Path] = {}
    payload: dict[str, Any] = {"targets": {}}
    summary: dict[str, Any] = {}
    timings = dict(evaluation.timings)
    plots = _matplotlib_available()
    if not plots:
        notes.append(
            "Figures skipped: matplotlib is not installed (pip install 'engage_seq[plots]')."
        )

    figures_started = time.perf_counter()
    body: list[str] = []
    intro: list[str] = []
    for i, target in enumerate(evaluation.targets):
        report = target_report(evaluation, target)
        if plots:
            report.figures = _horizon_figures(evaluation, report, figures_dir)
            figures.update(report.figures)
        if i == 0:
            intro, summary = _horizon_summary(evaluation, report)
        elif i == 1:
            intro += ["", "**Other targets** (test ROC-AUC): " + ", ".join(
                f"{_words(t)} {_fmt(evaluation.run.metrics.get(f'test/auroc/{t}'), 3)}"
                for t in evaluation.targets[1:]
            ) + "."]  # fmt: skip
        title = f"P({_words(target)} within {window_text(evaluation.horizon_seconds or 0)})"
        body += [f"## {title} on the test period", ""]
        body += _horizon_markdown(evaluation, report, figures_dir, out)
        rows_frame = pl.DataFrame(report.rows, infer_schema_length=None)
        tables[f"metrics_{target}"] = _write_table(rows_frame, tables_dir / f"metrics_{target}.csv")
        tables[f"calibration_{target}"] = _write_table(
            report.calibration, tables_dir / f"calibration_{target}.csv"
        )
        decile_frame = pl.concat(
            [t.with_columns(pl.lit(label).alias("model")) for label, t in report.deciles.items()]
        )
        tables[f"deciles_{target}"] = _write_table(
            decile_frame, tables_dir / f"deciles_{target}.csv"
        )
        payload["targets"][target] = {
            "rows": report.rows,
            "calibration": report.calibration.to_dicts(),
            "deciles": {label: t.to_dicts() for label, t in report.deciles.items()},
            "captured_top10": report.captured_top10,
            "score_means": report.score_means,
        }
    if next_event_part(evaluation.task) is not None:
        lines, next_payload = _next_event_part(evaluation, figures_dir, tables_dir, out, plots)
        intro += ["", *lines[:1]] if intro else lines[:1]
        body += lines[1:]
        figures.update(next_payload.pop("figures"))
        tables.update(next_payload.pop("tables"))
        payload["next_event"] = next_payload
        summary.setdefault("next_event_accuracy", next_payload["rows"][0]["test/accuracy"])
    timings["figures"] = time.perf_counter() - figures_started

    sections: list[ReportSection] = []
    if options.explain:
        built = _run_section(
            "explanations", lambda: explain_section(evaluation, options, figures_dir), skipped
        )
        sections += [built] if built else []
    built = _run_section(
        "segment fairness",
        lambda: fairness_section(evaluation, options, figures_dir, out),
        skipped,
    )
    sections += [built] if built else []
    for section in sections:
        _relink(section, figures_dir, out)
        body += [f"## {section.title}", "", section.markdown.rstrip(), ""]
        figures.update({name: Path(p) for name, p in section.figures.items()})
        for name, frame in section.tables.items():
            tables[name] = _write_table(frame, tables_dir / f"{name}.csv")
        timings[section.title] = section.summary.get("seconds")

    commands = _reproduce(evaluation, out, options)
    timings["report"] = time.perf_counter() - started + earlier
    markdown = _assemble(evaluation, intro, body, skipped, notes, commands, timings)
    write_text_atomic(out / "report.md", markdown)
    payload.update(
        {
            "format_version": REPORT_FORMAT_VERSION,
            "engage_seq_version": __version__,
            "generated_at": now_text(),
            "run": evaluation.run_dir.name,
            "model": evaluation.run.label,
            "task": _task_payload(evaluation),
            "data": evaluation.data_description,
            "data_fingerprint": evaluation.data_fingerprint,
            "periods": {
                name: {"cutoffs": [date_text(c) for c in split.cutoffs], "n_samples": len(split)}
                for name, split in evaluation.splits.items()
            },
            "summary": summary,
            "metrics": {
                s.name: {"label": s.label, "kind": s.kind, **s.metrics} for s in evaluation.scorers
            },
            "recorded_metrics": evaluation.recorded,
            "siblings": [
                {"name": s.name, "label": s.label, **s.metrics} for s in evaluation.siblings
            ],
            "sections": {s.title: s.summary for s in sections},
            "skipped": skipped,
            "notes": notes,
            "figures": {
                k: p.relative_to(out).as_posix() for k, p in figures.items() if _inside(p, out)
            },
            "tables": {k: p.relative_to(out).as_posix() for k, p in tables.items()},
            "reproduce": commands,
            "options": asdict(options),
            "timings_seconds": {k: round(v, 2) for k, v in timings.items() if v is not None},
        }
    )
    previous = _previous_outputs(out)
    write_json_atomic(out / "report.json", json_safe(payload))
    _remove_stale(out, previous, [*figures.values(), *tables.values()])
    if options.tensorboard and plots:
        try:
            _log_to_tensorboard(out / TENSORBOARD_DIR, markdown, figures)
        except Exception:  # the files are written; a TensorBoard hiccup must not hide them
            log.exception("report: TensorBoard page not written")
    log.info("report: %s (%.1f s)", out / "report.md", timings["report"])
    return out / "report.md"


def _previous_outputs(out: Path) -> list[Path]:
    """Figures and tables the last report in ``out`` listed (read before it is replaced)."""
    path = out / "report.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    listed = [*previous.get("figures", {}).values(), *previous.get("tables", {}).values()]
    return [out / str(p) for p in listed]


def _remove_stale(out: Path, previous: list[Path], current: list[Path]) -> None:
    """A rebuild without a section must not leave that section's old figures behind; only
    files the previous report itself listed, inside ``out``, are removed."""
    keep = {Path(p).resolve() for p in current}
    for path in previous:
        if path.resolve() not in keep and _inside(path, out) and path.is_file():
            path.unlink()


def _matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _next_event_part(
    evaluation: RunEvaluation, figures_dir: Path, tables_dir: Path, out: Path, plots: bool
) -> tuple[list[str], dict[str, Any]]:
    """-> (summary paragraph, then the section's lines), and its report.json payload."""
    rows = _next_event_rows(evaluation)
    test = evaluation.splits["test"]
    names = evaluation.next_event_classes
    counts = confusion_counts(evaluation.run.next_event["test"], test.next_classes, len(names))
    per_class = per_class_table(counts, names)
    header = ["model", *(name for _, name, _ in NEXT_EVENT_TABLE)]
    lines = [
        " ".join(_next_event_summary(evaluation, rows)),
        "## Next event on the test period",
        "",
        "Accuracy: the most likely type is the one that happened; top-3: it is among the three "
        "most likely; macro-F1: F1 averaged over event types (rare types count as much as "
        "common ones); NLL: mean negative log-probability of what happened (lower is better).",
        "",
        *_table(
            header,
            [
                [
                    f"**{r['label']}** (this run)" if i == 0 else r["label"],
                    *(_fmt(r[f"test/{m}"], d) for m, _, d in NEXT_EVENT_TABLE),
                ]
                for i, r in enumerate(rows)
            ],
        ),
        "",
        "Validation period:",
        "",
        *_table(
            header,
            [[r["label"], *(_fmt(r[f"val/{m}"], d) for m, _, d in NEXT_EVENT_TABLE)] for r in rows],
        ),
        "",
    ]
    figures: dict[str, Path] = {}
    if plots:
        from engage_seq.reporting.figures import plot_confusion, save_figure

        figure = plot_confusion(
            counts,
            names,
            f"Next event: what {evaluation.run.label} predicts vs what happened (test period)",
        )
        figures["confusion_next_event"] = save_figure(
            figure, figures_dir / "confusion_next_event.png"
        )
        relative = figures["confusion_next_event"].relative_to(out).as_posix()
        lines += [
            f"![confusion matrix]({relative})",
            "",
            "**Confusion matrix.** Each row is the event that really came next and sums to "
            "100 %; the diagonal is how often the model's first guess was right for it.",
            "",
        ]
    shown = per_class.filter(pl.col("support") > 0).sort("support", descending=True)
    lines += _table(
        ["event", "support", "precision", "recall", "F1"],
        [
            [r["event"], f"{r['support']:,}", _fmt(r["precision"], 3), _fmt(r["recall"], 3),
             _fmt(r["f1"], 3)]
            for r in shown.iter_rows(named=True)
        ],
    )  # fmt: skip
    lines.append("")
    tables = {
        "next_event_per_class": _write_table(per_class, tables_dir / "next_event_per_class.csv")
    }
    payload = {
        "rows": rows,
        "per_class": per_class.to_dicts(),
        "confusion": counts.tolist(),
        "classes": names,
        "figures": figures,
        "tables": tables,
    }
    return lines, payload


def _task_payload(evaluation: RunEvaluation) -> dict[str, Any]:
    task = evaluation.task
    horizon, next_event = horizon_part(task), next_event_part(task)
    return {
        "type": type(task).__name__,
        "name": task.name,
        "targets": list(evaluation.targets),
        "horizon_seconds": evaluation.horizon_seconds,
        "next_event_max_gap": next_event.max_gap if next_event is not None else None,
        "has_horizon": horizon is not None,
    }


def _assemble(
    evaluation: RunEvaluation,
    intro: list[str],
    body: list[str],
    skipped: dict[str, str],
    notes: list[str],
    commands: list[str],
    timings: dict[str, float | None],
) -> str:
    task = evaluation.task
    lines = [
        f"# Run report: {evaluation.run.label}, task {task.name}",
        "",
        f"*Run `{evaluation.run_dir.name}` · {evaluation.data_description} · samples "
        f"`{evaluation.data_fingerprint}` · engage_seq {__version__} · "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC*",
        "",
        "## In short",
        "",
        *intro,
        "",
    ]
    for note in notes:
        lines += [f"> **Note.** {note}", ""]
    lines += body
    if skipped:
        lines += ["## Not in this report", ""]
        lines += [f"- {name}: {reason}" for name, reason in skipped.items()]
        lines.append("")
    spent = ", ".join(
        f"{name} {value:.1f} s"
        for name, value in timings.items()
        if value is not None and name not in ("report", "evaluate")
    )
    lines += [
        "## How to reproduce",
        "",
        reproduce_intro(commands),
        "",
        "```bash",
        *commands,
        "```",
        "",
        f"Report built in {timings.get('report') or 0:.1f} s ({spent}).",
        "",
    ]
    return "\n".join(lines)
