"""The opening paragraphs of a run report ("In short") for its first horizon target, written
for a marketing reader: what was predicted for which period, how good it is against the best
baseline and the oracle, what the top 10 % by score capture, whether the scores read as
probabilities; and the same headline numbers for ``report.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engage_seq.common.times import window_text
from engage_seq.evaluation.results import RunEvaluation, is_finite, metric_key
from engage_seq.reporting.horizon import TargetReport
from engage_seq.reporting.wording import (
    as_words,
    fmt,
    negatives_noun,
    one_class_reason,
    pct,
    period_text,
    positives_noun,
)

Row = dict[str, Any]


def _best(rows: Sequence[Row], kind: str) -> Row | None:
    found = [r for r in rows if r["kind"] == kind and is_finite(r["test/auroc"])]
    return max(found, key=lambda r: r["test/auroc"]) if found else None


def _metric(evaluation: RunEvaluation, split: str, name: str, target: str) -> float | None:
    return evaluation.run.metrics.get(f"{split}/{metric_key(name, target, evaluation.targets)}")


def _quality(
    evaluation: RunEvaluation, report: TargetReport, undefined: str, references: list[Row | None]
) -> str:
    """How well it ranks, against the best baseline and the oracle."""
    target = report.target
    positives = positives_noun(target)
    auroc = report.rows[0]["test/auroc"]
    baseline, oracle = references
    if is_finite(auroc):
        quality = (
            f"**How good.** It ranks a random one of the {positives} above a random one of the "
            f"{negatives_noun(target)} {pct(auroc)} of the time (ROC-AUC {fmt(auroc, 3)})"
        )
    else:
        quality = f"**How good.** ROC-AUC is undefined: {undefined}, so ranking is not measured"
    other = "other " if evaluation.model is None else ""  # a baseline run's own report
    if baseline is not None and is_finite(auroc):
        gap = auroc - baseline["test/auroc"]
        quality += (
            f", {'ahead of' if gap >= 0 else 'behind'} the best {other}baseline, "
            f"{baseline['label']} ({fmt(baseline['test/auroc'], 3)}, {gap:+.3f})"
        )
    if oracle is not None and is_finite(auroc):
        quality += (
            f"; the oracle, the best any model can do on this synthetic data, reaches "
            f"{fmt(oracle['test/auroc'], 3)} ({auroc - oracle['test/auroc']:+.3f} to go)"
        )
    return quality + "."


def _action(model: Row, baseline: Row | None, positives: str, undefined: str) -> str:
    """Who to contact: the share of positives the top 10 % by score hold."""
    if not is_finite(model["test/captured_top10"]):
        return f"**Who to contact.** The top 10 % capture is undefined: {undefined}."
    action = (
        f"**Who to contact.** The top 10 % of users by score hold "
        f"**{pct(model['test/captured_top10'])} of all {positives}**, "
        f"{fmt(model['test/lift_top10'], 1)}× as many as a random 10 %"
    )
    if baseline is not None and is_finite(baseline["test/captured_top10"]):
        action += (
            f" ({baseline['label']}: {pct(baseline['test/captured_top10'])}, "
            f"{fmt(baseline['test/lift_top10'], 1)}×)"
        )
    return action + "."


def _calibrated(ece: float, mean_prediction: float | None, rate: float | None) -> str:
    if not is_finite(ece):
        return (
            "**Can the scores be read as probabilities?** The calibration error is not "
            "available for the test period."
        )
    return (
        f"**Can the scores be read as probabilities?** Predicted rates differ from the "
        f"observed ones by {fmt(ece * 100, 2)} percentage points on average (calibration "
        f"error {fmt(ece)}; mean prediction {pct(mean_prediction, 2)} vs {pct(rate, 2)} "
        "observed)."
    )


def _validation(evaluation: RunEvaluation, report: TargetReport) -> str:
    val_auroc = report.rows[0]["val/auroc"]
    val_rate = _metric(evaluation, "val", "positive_rate", report.target)
    positives = positives_noun(report.target)
    val_text = (
        f"ROC-AUC was {fmt(val_auroc, 3)}"
        if is_finite(val_auroc)
        else f"ROC-AUC was undefined: {one_class_reason(val_rate, positives, 'validation')}"
    )
    window = evaluation.horizon_seconds or 0
    return (
        f"On the validation period ({period_text(evaluation.splits['val'], window)}), which "
        f"chose the checkpoint, {val_text}."
    )


def horizon_summary(
    evaluation: RunEvaluation, report: TargetReport
) -> tuple[list[str], dict[str, Any]]:
    """The opening paragraphs (first target) and their numbers for report.json."""
    test = evaluation.splits["test"]
    target = report.target
    model = report.rows[0]
    rate = _metric(evaluation, "test", "positive_rate", target)
    mean_prediction = _metric(evaluation, "test", "mean_prediction", target)
    baseline, oracle = _best(report.rows, "baseline"), _best(report.rows, "oracle")
    positives = positives_noun(target)
    window = evaluation.horizon_seconds or 0
    text = (
        f"**What it predicts.** How likely each user is to **{as_words(target)} within "
        f"{window_text(window)}** of a cutoff date. **Tested on** {period_text(test, window)}: "
        f"{len(test):,} users, {pct(rate)} of them {positives}."
    )
    undefined = one_class_reason(rate, positives, "test")
    quality = _quality(evaluation, report, undefined, [baseline, oracle])
    action = _action(model, baseline, positives, undefined)
    calibrated = _calibrated(model["test/ece"], mean_prediction, rate)
    val = _validation(evaluation, report)
    summary = {
        "target": target,
        "horizon_seconds": evaluation.horizon_seconds,
        "n_test": len(test),
        "positive_rate": rate,
        "mean_prediction": mean_prediction,
        "auroc": model["test/auroc"],
        "auprc": model["test/auprc"],
        "ece": model["test/ece"],
        "lift_top10": model["test/lift_top10"],
        "captured_top10": model["test/captured_top10"],
        "val_auroc": model["val/auroc"],
        "best_baseline": baseline["label"] if baseline else None,
        "best_baseline_auroc": baseline["test/auroc"] if baseline else None,
        "best_baseline_captured_top10": baseline["test/captured_top10"] if baseline else None,
        "oracle_auroc": oracle["test/auroc"] if oracle else None,
    }
    return [text, "", quality, "", action, "", calibrated, "", val], summary
