"""The base-rate flag: it fires when training and the newest labelled window differ by more
than the stated amount (relative and absolute), not otherwise, and the report says what to do;
the reliability section shows a post-hoc calibration before and after."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from engage_seq.evaluation.base_rates import base_rate_shifts, shift_flagged
from engage_seq.evaluation.results import Scorer
from engage_seq.models.calibration import Calibration, OutputCalibration
from engage_seq.reporting.calibration_text import (
    base_rate_flag,
    calibration_payload,
    reliability_lines,
)


def _labels(rate: float, n: int = 1000) -> np.ndarray:
    return (np.arange(n) < round(rate * n)).astype(np.float64)[:, None]


@pytest.mark.parametrize(
    ("train", "val", "flagged"),
    [
        (0.260, 0.178, True),  # issue 21's purchase log: an older, busier customer base
        (0.100, 0.130, True),  # +30 % relative, +3 points
        (0.100, 0.115, False),  # +15 % relative: within the noise of a window
        (0.005, 0.009, False),  # +80 % relative but 0.4 points: a rare event's noise
        (0.500, 0.580, False),  # +8 points but +16 % relative
    ],
)
def test_the_flag_needs_both_a_relative_and_an_absolute_shift(
    train: float, val: float, flagged: bool
) -> None:
    (shift,) = base_rate_shifts(("purchase",), _labels(train), _labels(val), _labels(0.2))
    assert (shift.train, shift.val, shift.test) == pytest.approx((train, val, 0.2))
    assert shift.flagged is flagged
    assert shift_flagged(train, val) is flagged


def test_no_targets_or_no_samples_give_no_entries() -> None:
    empty = np.zeros((0, 1))
    assert base_rate_shifts((), _labels(0.1), _labels(0.2), _labels(0.2)) == []
    assert base_rate_shifts(("purchase",), empty, _labels(0.2), _labels(0.2)) == []
    assert not shift_flagged(math.nan, 0.3)


def _evaluation(train: float, val: float, calibration: Calibration | None) -> SimpleNamespace:
    metrics = {
        f"{split}/{name}": value
        for split in ("test", "val", "test_uncalibrated", "val_uncalibrated")
        for name, value in (("ece", 0.1 if "uncal" in split else 0.01), ("brier", 0.12))
    }
    return SimpleNamespace(
        base_rates=base_rate_shifts(("purchase",), _labels(train), _labels(val), _labels(val)),
        run=Scorer(
            "lstm", "LSTM", "model", ("purchase",), metrics=metrics, calibration=calibration
        ),
        model=object(),
        targets=("purchase",),
    )


def test_the_report_flags_a_shift_and_says_what_to_do() -> None:
    shifted = _evaluation(0.26, 0.18, None)
    flag = base_rate_flag(shifted)  # type: ignore[arg-type]
    assert flag is not None and "26.0 %" in flag and "18.0 %" in flag
    assert "calibration.method=platt" in flag and "training.refit=true" in flag
    text = "\n".join(reliability_lines(shifted, "purchase"))  # type: ignore[arg-type]
    assert "No post-hoc calibration" in text and "differ by more than 20 %" in text
    payload = calibration_payload(shifted)  # type: ignore[arg-type]
    assert payload["base_rate_flagged"] is True and payload["post_hoc_calibration"] is None
    steady = _evaluation(0.18, 0.18, None)
    assert base_rate_flag(steady) is None  # type: ignore[arg-type]
    assert "differ by more" not in "\n".join(reliability_lines(steady, "purchase"))  # type: ignore[arg-type]


def test_the_reliability_section_shows_the_calibration_before_and_after() -> None:
    platt = Calibration(
        "platt",
        (OutputCalibration("purchase", scale=0.8, bias=-0.5),),
        fitted_on={"split": "val", "n_samples": 1234},
    )
    evaluation = _evaluation(0.26, 0.18, platt)
    text = "\n".join(reliability_lines(evaluation, "purchase"))  # type: ignore[arg-type]
    assert "**Post-hoc calibration: platt** (sigmoid(0.800 · logit -0.500))" in text
    assert "validation window (1,234 samples)" in text
    assert "| test | raw | 0.1000 | 0.1200 |" in text
    assert "| test | calibrated | 0.0100 | 0.1200 |" in text
    assert "this run's post-hoc calibration (platt" in base_rate_flag(evaluation)  # type: ignore[arg-type,operator]
    assert calibration_payload(evaluation)["post_hoc_calibration"]["method"] == "platt"  # type: ignore[arg-type]
