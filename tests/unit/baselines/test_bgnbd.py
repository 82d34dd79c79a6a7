"""BG/NBD baseline: parameters recovered from data simulated by the model, probabilities that
behave as the model says, the x / t_x / T summary on hand-made histories, a JSON round trip and
the install hint without SciPy."""

from __future__ import annotations

import json
import sys

import numpy as np
import polars as pl
import pytest
from helpers.bgnbd_simulation import CUTOFF, TRUE, D, simulate

from engage_seq.baselines import BGNBD
from engage_seq.baselines.bgnbd import PARAMETERS, probability_alive, probability_any, rfm_summary


def test_recovers_known_parameters_from_simulated_data() -> None:
    frame, _ = simulate(6000, seed=0, params=TRUE)
    fitted = BGNBD().fit(frame, None, ["label_purchase"], horizon_seconds=7 * D)
    got = fitted.params["label_purchase"]
    # relative tolerances ~3 standard errors at this size (a and b are the least identified)
    tolerance = {"r": 0.15, "alpha": 0.2, "a": 0.35, "b": 0.4}
    for name in PARAMETERS:
        assert abs(got[name] / TRUE[name] - 1) < tolerance[name], (name, got, TRUE)


def test_predicted_probability_matches_simulated_future() -> None:
    """Scored with the true parameters, P(any in the horizon) matches the simulated rate
    overall and among users with and without repeats (closed form vs Monte Carlo)."""
    frame, bought = simulate(20_000, seed=1, params=TRUE, horizon=30.0)
    params = np.array([TRUE[k] for k in PARAMETERS])
    summary = rfm_summary(frame, "purchase")
    prob = probability_any(params, summary, 30.0)
    for group in (np.ones(len(prob), bool), summary[:, 0] == 0, summary[:, 0] >= 3):
        se = np.sqrt(prob[group].mean() * (1 - prob[group].mean()) / group.sum())
        assert abs(prob[group].mean() - bought[group].mean()) < 4 * se + 1e-3


def test_probabilities_follow_the_model() -> None:
    params = np.array([TRUE[k] for k in PARAMETERS])
    # same frequency and age, more and more recent last purchase: more likely alive and buying
    recency = np.linspace(1, 199, 50)
    summary = np.column_stack([np.full(50, 5.0), recency, np.full(50, 200.0)])
    alive, buy = probability_alive(params, summary), probability_any(params, summary, 7.0)
    assert np.all(np.diff(alive) > 0) and np.all(np.diff(buy) > 0)
    # no repeat purchase: always alive, but a long quiet age means a low rate
    quiet = probability_any(params, np.array([[0.0, 0.0, 20.0], [0.0, 0.0, 2000.0]]), 7.0)
    assert quiet[1] < 0.01 < quiet[0]
    # a frequent buyer who stopped long ago is probably dead
    assert probability_alive(params, np.array([[20.0, 10.0, 300.0]]))[0] < 0.01
    # extreme inputs stay finite probabilities
    extreme = np.array([[1e5, 1e4, 1e4], [0.0, 0.0, 1e-6], [1.0, 0.0, 1e6]])
    out = probability_any(params, extreme, 1e4)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))


def test_summary_counts_target_events_after_the_first_kept_event() -> None:
    c = 100 * D
    frame = pl.DataFrame(
        {
            "cutoff": [c, c, c],
            "event_type": [
                ["page_view", "purchase", "page_view", "purchase"],
                ["purchase", "page_view"],  # the first purchase is the birth: x = 0
                ["page_view"],
            ],
            "ts": [[c - 10 * D, c - 8 * D, c - 5 * D, c - 2 * D], [c - 4 * D, c - D], [c - D]],
        },
        schema_overrides={"cutoff": pl.Int64, "ts": pl.List(pl.Int64)},
    )
    expected = [[2.0, 8.0, 10.0], [0.0, 0.0, 4.0], [0.0, 0.0, 1.0]]
    np.testing.assert_allclose(rfm_summary(frame, "purchase"), expected)


def test_fits_on_the_last_training_cutoff_and_round_trips_through_json() -> None:
    frame, _ = simulate(1500, seed=2, params=TRUE)
    earlier = frame.with_columns(pl.lit(CUTOFF - 30 * D, dtype=pl.Int64).alias("cutoff"))
    earlier = earlier.with_columns(pl.col("ts").list.eval(pl.element() - 30 * D))
    pooled = pl.concat([earlier, frame])
    model = BGNBD().fit(pooled, None, ["label_purchase"], horizon_seconds=7 * D)
    alone = BGNBD().fit(frame, None, ["label_purchase"], horizon_seconds=7 * D)
    assert model.n_fit_samples == 1500 and model.params == alone.params
    loaded = BGNBD.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    assert loaded.predict_proba(frame).shape == (1500, 1)


def test_refuses_what_it_cannot_fit() -> None:
    frame, _ = simulate(50, seed=3, params=TRUE)
    with pytest.raises(ValueError, match="horizon_seconds"):
        BGNBD().fit(frame, None, ["label_purchase"])
    with pytest.raises(ValueError, match="not a horizon label column"):
        BGNBD().fit(frame, None, ["label_next_event"], horizon_seconds=D)
    with pytest.raises(RuntimeError, match="before fit"):
        BGNBD().predict_proba(frame)


def test_without_scipy_says_how_to_install(monkeypatch) -> None:
    frame, _ = simulate(50, seed=4, params=TRUE)
    monkeypatch.setitem(sys.modules, "scipy", None)  # makes `from scipy import ...` fail
    with pytest.raises(ImportError, match=r"pip install 'engage_seq\[btyd\]'"):
        BGNBD().fit(frame, None, ["label_purchase"], horizon_seconds=D)


def test_scored_by_the_shared_metric_code_with_the_task_horizon() -> None:
    from engage_seq.data import HorizonTask
    from engage_seq.evaluation.baseline_scores import fit_and_score_baseline

    splits = {
        name: simulate(1500, seed=10 + i, params=TRUE, horizon=30.0)[0]
        for i, name in enumerate(("train", "val", "test"))
    }
    model = BGNBD()
    task = HorizonTask(targets=("purchase",), horizon="30d", name="purchase_30d")
    metrics = fit_and_score_baseline(model, task, splits, vocabulary=None)  # type: ignore[arg-type]
    assert model.horizon_seconds == 30 * D
    for split in ("val", "test"):
        assert 0.6 < metrics[f"{split}/auroc"] <= 1  # the true model ranks its own data well
        assert abs(metrics[f"{split}/mean_prediction"] - metrics[f"{split}/positive_rate"]) < 0.05
