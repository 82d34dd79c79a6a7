"""Fitting post-hoc calibration: each method recovers a known miscalibration of simulated
logits, stays finite on separable data, and the isotonic fit is monotone and helps; a model's
val and test metrics are rescored through the fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engage_seq.models.calibration import MAX_KNOTS, PROBABILITY_FLOOR, CalibrationError
from engage_seq.models.engagement import EngagementModel
from engage_seq.training.batches import EncodedSamples
from engage_seq.training.calibration import (
    SCALE_BOUNDS,
    calibrate_best,
    calibration_method,
    fit_calibration,
    fit_isotonic,
    fit_next_event_scale,
    fit_platt,
    fit_temperature,
    rescore,
)


def _simulated(scale: float, bias: float, n: int = 20_000, seed: int = 0):
    """Logits z whose true probability is sigmoid(scale * z + bias)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(scale * z + bias)))).astype(np.float64)
    return z, labels


def _logloss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_temperature_recovers_a_known_scale() -> None:
    z, y = _simulated(0.5, 0.0)
    assert fit_temperature(z, y) == pytest.approx(0.5, abs=0.03)


def test_platt_recovers_a_known_scale_and_shift() -> None:
    z, y = _simulated(0.6, -1.2)
    a, b = fit_platt(z, y)
    assert a == pytest.approx(0.6, abs=0.04)
    assert b == pytest.approx(-1.2, abs=0.06)


def test_separable_data_gives_finite_bounded_parameters() -> None:
    z = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    y = (z > 0).astype(np.float64)
    a, b = fit_platt(z, y)
    assert np.isfinite([a, b]).all() and SCALE_BOUNDS[0] <= a <= SCALE_BOUNDS[1]
    z, y = _simulated(-1.0, -2.0, n=4000)  # anti-informative scores: never a reversed ranking
    a, b = fit_platt(z, y)
    assert a == SCALE_BOUNDS[0]
    assert np.mean(1 / (1 + np.exp(-(a * z + b)))) == pytest.approx(y.mean(), abs=1e-3)


def test_isotonic_is_monotone_bounded_and_improves_a_miscalibrated_sample() -> None:
    z, y = _simulated(1.0, -1.5, n=6000, seed=3)
    raw = 1 / (1 + np.exp(-z))  # overconfident and too high: the truth is shifted down
    x, fitted = fit_isotonic(raw, y)
    assert 2 <= len(x) <= MAX_KNOTS
    assert np.all(np.diff(x) > 0) and np.all(np.diff(fitted) >= 0)
    assert min(fitted) >= PROBABILITY_FLOOR and max(fitted) <= 1 - PROBABILITY_FLOOR
    calibrated = np.interp(raw, x, fitted)
    assert _logloss(calibrated, y) < _logloss(raw, y) - 0.05
    assert abs(calibrated.mean() - y.mean()) < 0.01


def test_isotonic_pools_a_decreasing_pair_into_one_block() -> None:
    x, fitted = fit_isotonic(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 0.0, 1.0]))
    assert fitted == pytest.approx([PROBABILITY_FLOOR, 0.5, 1 - PROBABILITY_FLOOR])
    assert x == pytest.approx([0.1, 0.25, 0.4])


def test_next_event_temperature_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 2.0, (8000, 4))
    true = np.exp(0.5 * logits)
    true /= true.sum(1, keepdims=True)
    classes = np.array([rng.choice(4, p=p) for p in true])
    assert fit_next_event_scale(logits, classes) == pytest.approx(0.5, abs=0.04)


def test_fit_calibration_per_output_and_the_method_check() -> None:
    z1, y1 = _simulated(0.5, 0.0, n=4000, seed=1)
    z2, y2 = _simulated(2.0, 0.0, n=4000, seed=2)
    fitted = fit_calibration(
        np.stack([z1, z2], 1), np.stack([y1, y2], 1), "temperature", ["a", "b"]
    )
    assert fitted is not None and [o.name for o in fitted.outputs] == ["a", "b"]
    assert fitted.outputs[0].scale < 0.7 < 1.5 < fitted.outputs[1].scale
    assert fit_calibration(z1[:, None], y1[:, None], "none", ["a"]) is None
    assert calibration_method({}) == "none"
    assert calibration_method({"calibration": {"method": "platt"}}) == "platt"
    with pytest.raises(CalibrationError, match=r"calibration\.method"):
        calibration_method({"calibration": {"method": "beta"}})


def _encoded(n: int, seed: int) -> EncodedSamples:
    """Random short histories whose label depends on the first event (learnable)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, n)
    real = np.arange(6)[None, :] < lengths[:, None]
    events = rng.integers(2, 8, (n, 6)) * real
    labels = (rng.random(n) < np.where(events[:, 0] > 4, 0.3, 0.05)).astype(np.float32)
    return EncodedSamples(
        events, np.where(real, 2, 0), np.zeros((n, 6, 0), np.int64),
        np.zeros((n, 6, 0), np.float32), np.zeros((n, 6, 2), np.float32), lengths,
        labels[:, None],
    )  # fmt: skip


def test_calibrate_best_rescores_val_and_test_and_rescore_reproduces_it() -> None:
    torch.manual_seed(0)
    model = EngagementModel(n_event_ids=8, n_channel_ids=3, n_time_features=2, n_outputs=1,
                            max_len=6).eval()  # fmt: skip
    encoded = {"val": _encoded(300, 1), "test": _encoded(200, 2)}
    metrics: dict[str, float] = {}
    fitted = calibrate_best(model, encoded, "platt", 64, ("purchase",), metrics)
    assert fitted is not None and fitted.fitted_on == {"split": "val", "n_samples": 300}
    for split in ("val", "test"):
        assert metrics[f"{split}/auroc"] == pytest.approx(
            metrics[f"{split}_uncalibrated/auroc"], abs=1e-3
        )
    # fitted on val: the mean prediction meets the observed rate there, log-loss improves
    assert metrics["val/mean_prediction"] == pytest.approx(metrics["val/positive_rate"], abs=1e-3)
    assert metrics["val/logloss"] < metrics["val_uncalibrated/logloss"]
    assert fitted.after["logloss"] == metrics["val/logloss"]
    again: dict[str, float] = {}
    rescore(model, encoded["test"], fitted, 64, ["purchase"], "test", again)
    assert again == {k: v for k, v in metrics.items() if k.startswith("test")}
    assert calibrate_best(model, encoded, "none", 64, ("purchase",), {}) is None
