"""The four figures of one horizon target (ranking, calibration, gains and lift, score
distribution): the curves of every scorer on the test period, handed to
`engage_seq.reporting.figures` to draw. Called only where matplotlib is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engage_seq.common.times import window_text
from engage_seq.evaluation.results import RunEvaluation, metric_key
from engage_seq.reporting.curves import gains_curve, roc_pr
from engage_seq.reporting.figures import (
    Curve,
    plot_calibration,
    plot_gains,
    plot_ranking,
    plot_score_distribution,
    save_figure,
)
from engage_seq.reporting.horizon import TargetReport, target_column
from engage_seq.reporting.wording import as_words, fmt, negatives_noun, positives_noun


def _curves(
    evaluation: RunEvaluation, report: TargetReport, labels: np.ndarray
) -> tuple[list[Curve], list[Curve], list[Curve], list[Curve]]:
    """-> ROC, precision-recall, gains and lift-by-decile curves, one per scorer."""
    target = report.target
    by_label = {row["label"]: row for row in report.rows}
    roc, pr, gains, lifts = [], [], [], []
    for scorer in evaluation.scorers:
        column = target_column(scorer, target)
        if column is None or "test" not in scorer.horizon:
            continue
        probs = scorer.horizon["test"][:, column]
        row = by_label[scorer.label]
        (fpr, tpr), (recall, precision) = roc_pr(probs, labels)
        roc.append(Curve(f"{scorer.label}: {fmt(row['test/auroc'], 3)}", scorer.kind, fpr, tpr))
        pr.append(
            Curve(f"{scorer.label}: {fmt(row['test/auprc'], 3)}", scorer.kind, recall, precision)
        )
        contacted, reached = gains_curve(probs, labels)
        gains.append(Curve(scorer.label, scorer.kind, contacted, reached))
        table = report.deciles[scorer.label]
        lifts.append(
            Curve(scorer.label, scorer.kind, table["decile"].to_numpy(), table["lift"].to_numpy())
        )
    return roc, pr, gains, lifts


def draw_horizon_figures(
    evaluation: RunEvaluation, report: TargetReport, figures_dir: Path
) -> dict[str, Path]:
    """Draw and save the target's figures; -> short name ('ranking_purchase') -> PNG path."""
    target = report.target
    test = evaluation.splits["test"]
    labels = test.horizon_labels[:, evaluation.targets.index(target)]
    roc, pr, gains, lifts = _curves(evaluation, report, labels)
    positive_rate = float(labels.mean())
    what = f"P({as_words(target)} within {window_text(evaluation.horizon_seconds or 0)})"
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
        before=report.calibration_before,
        before_ece=evaluation.run.metrics.get(
            f"test_uncalibrated/{metric_key('ece', target, evaluation.targets)}"
        ),
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
        evaluation.run.horizon["test"][:, target_column(evaluation.run, target) or 0],
        labels,
        positives,
        negatives,
        f"{what}: scores of {positives} and {negatives} ({evaluation.run.label}, test period)",
    )
    out[f"scores_{target}"] = save_figure(figure, figures_dir / f"scores_{target}.png")
    return out
