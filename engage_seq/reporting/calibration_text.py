"""The report's words on calibration under drift: the post-hoc calibration before/after
(method, where it was fitted, calibration error, Brier and log-loss raw vs calibrated on the
test and validation windows) under the reliability figure, and the base-rate flag
(`engage_seq.evaluation.base_rates`) near the top and in the same section, with what to do.
Plain text and numbers; the figure is `engage_seq.reporting.figures.plot_calibration`."""

from __future__ import annotations

from typing import Any

from engage_seq.evaluation.base_rates import ABSOLUTE_SHIFT, RELATIVE_SHIFT, BaseRateShift
from engage_seq.evaluation.results import RunEvaluation, metric_key
from engage_seq.reporting.wording import as_words, fmt, markdown_table, pct, positives_noun

BEFORE_AFTER = (  # (metric, column header, digits)
    ("ece", "calibration error", 4),
    ("brier", "Brier", 4),
    ("logloss", "log-loss", 4),
    ("mean_prediction", "mean prediction", 4),
    ("positive_rate", "observed rate", 4),
)

THRESHOLDS = (
    f"{RELATIVE_SHIFT * 100:.0f} % relative and {ABSOLUTE_SHIFT * 100:.0f} percentage point"
)


def _shift(evaluation: RunEvaluation, target: str) -> BaseRateShift | None:
    return next((s for s in evaluation.base_rates if s.target == target), None)


def _what_to_do(evaluation: RunEvaluation) -> str:
    calibration = evaluation.run.calibration
    if calibration is not None:
        return (
            f"this run's post-hoc calibration ({calibration.method}, fitted on the validation "
            "window) moves its scores to the newer level; `training.refit=true` also trains on "
            "the newest window"
        )
    if evaluation.model is None:
        return "a baseline is refitted per run: train it on windows closer to the test period"
    return (
        "set `calibration.method=platt` (or `temperature`, `isotonic`) to fit the scores to the "
        "validation window's level inside the artifact, and consider `training.refit=true`"
    )


def base_rate_flag(evaluation: RunEvaluation) -> str | None:
    """One paragraph for the top of the report when a target's base rate moved, else None."""
    flagged = [s for s in evaluation.base_rates if s.flagged]
    if not flagged:
        return None
    moves = "; ".join(
        f"{as_words(s.target)}: {pct(s.train)} in the training windows, {pct(s.val)} in the "
        f"newest labelled window (validation), {pct(s.test)} in the test window"
        for s in flagged
    )
    return (
        f"**The base rate moved.** {moves}. That is more than {THRESHOLDS} apart, so "
        "probabilities learnt on the older windows are off for newer ones although the "
        f"ranking may hold: {_what_to_do(evaluation)}."
    )


def _parameters(evaluation: RunEvaluation, target: str) -> str:
    calibration = evaluation.run.calibration
    assert calibration is not None
    output = next(o for o in calibration.outputs if o.name == target)
    if calibration.method == "temperature":
        return f"temperature {fmt(1 / output.scale, 3)}: sigmoid(logit / T)"
    if calibration.method == "platt":
        return f"sigmoid({fmt(output.scale, 3)} · logit {output.bias:+.3f})"
    return f"a monotone step curve through {len(output.knots_x)} knots, interpolated"


def _before_after_rows(evaluation: RunEvaluation, target: str) -> list[list[str]]:
    metrics = evaluation.run.metrics
    rows = []
    for split, period in (("test", "test"), ("val", "validation (fitted here)")):
        for version, prefix in (("raw", f"{split}_uncalibrated"), ("calibrated", split)):
            values = [
                fmt(metrics.get(f"{prefix}/{metric_key(m, target, evaluation.targets)}"), d)
                for m, _, d in BEFORE_AFTER
            ]
            rows.append([period, version, *values])
    return rows


def reliability_lines(evaluation: RunEvaluation, target: str) -> list[str]:
    """Under the reliability figure: the calibration before/after and the base rates."""
    lines: list[str] = []
    calibration = evaluation.run.calibration
    if calibration is not None:
        n = calibration.fitted_on.get("n_samples")
        lines += [
            f"**Post-hoc calibration: {calibration.method}** "
            f"({_parameters(evaluation, target)}), fitted on the validation window"
            f"{f' ({n:,} samples)' if isinstance(n, int) else ''}, the newest labelled one, "
            "on the predictions of the checkpoint chosen there, and applied inside the exported "
            "artifact: the tables and figures above show the calibrated scores; the reliability "
            "figure draws the raw ones dashed. Ranking (ROC-AUC) is unchanged up to ties. On "
            "validation the 'after' is optimistic (fitted there); test is the honest check.",
            "",
            *markdown_table(
                ["period", "scores", *(name for _, name, _ in BEFORE_AFTER)],
                _before_after_rows(evaluation, target),
            ),
            "",
        ]
    elif evaluation.model is not None:
        lines += [
            "No post-hoc calibration (`calibration.method: none`): these are the model's raw "
            "scores.",
            "",
        ]
    shift = _shift(evaluation, target)
    if shift is not None:
        text = (
            f"**Base rates** (share of {positives_noun(target)}): training windows "
            f"{pct(shift.train, 2)}, validation {pct(shift.val, 2)}, test {pct(shift.test, 2)}."
        )
        if shift.flagged:
            text += (
                f" Training and validation differ by more than {THRESHOLDS}: "
                f"{_what_to_do(evaluation)}."
            )
        lines += [text, ""]
    return lines


def calibration_payload(evaluation: RunEvaluation) -> dict[str, Any]:
    """report.json's entries: the calibration record and the base rates with their flag."""
    calibration = evaluation.run.calibration
    return {
        "post_hoc_calibration": calibration.to_dict() if calibration is not None else None,
        "base_rates": [s.to_dict() for s in evaluation.base_rates],
        "base_rate_flagged": any(s.flagged for s in evaluation.base_rates),
    }
