"""``training.refit`` for baselines: the refit is fitted on train + validation rows (exactly a
fit on the joined frame), validation stays scored by the fit on train alone, and a GBM keeps
the boosting rounds early stopping chose."""

from __future__ import annotations

import numpy as np
import polars as pl
from helpers.prerequisites import require_module

from engage_seq.baselines import GradientBoostedTrees, RFMLogisticRegression
from engage_seq.baselines.refit import carry_selection, train_and_val
from engage_seq.data import HorizonTask
from engage_seq.evaluation.baseline_scores import fit_and_score_baseline

D = 86_400
C = 1_767_225_600  # 2026-01-01 UTC
TASK = HorizonTask(targets=("purchase",), horizon="7d", name="purchase_7d")


def samples(n: int, seed: int, cart_rate: float) -> pl.DataFrame:
    """Histories of 1-6 events; a user with an add_to_cart buys with ``cart_rate``, others
    with 0.1 (a different ``cart_rate`` per split is drift between windows)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, n)
    row = np.repeat(np.arange(n), lengths)
    events = pl.DataFrame(
        {
            "row": row,
            "event_type": rng.choice(["page_view", "add_to_cart", "purchase"], row.size),
            "channel": rng.choice(["web", "app"], row.size),
            "ts": C - rng.integers(60, 30 * D, row.size),
        }
    ).sort("row", "ts")
    frame = events.group_by("row", maintain_order=True).agg("event_type", "channel", "ts")
    cart = frame["event_type"].list.contains("add_to_cart").to_numpy()
    return frame.drop("row").with_columns(
        pl.lit(C, dtype=pl.Int64).alias("cutoff"),
        pl.col("event_type").list.len().cast(pl.UInt32).alias("n_history"),
        (C - pl.col("ts").list.last()).alias("seconds_since_last"),
        pl.Series("label_purchase", rng.random(n) < np.where(cart, cart_rate, 0.1)),
    )


SPLITS = {
    "train": samples(400, seed=1, cart_rate=0.8),
    "val": samples(300, seed=2, cart_rate=0.3),
    "test": samples(300, seed=3, cart_rate=0.3),
}


def test_joined_frame_is_train_then_validation() -> None:
    joined = train_and_val(SPLITS["train"], SPLITS["val"])
    assert joined.height == 700
    assert joined.head(400).equals(SPLITS["train"]) and joined.tail(300).equals(SPLITS["val"])
    lazy = train_and_val(SPLITS["train"].lazy(), SPLITS["val"])
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect().equals(joined)


def test_rfm_logreg_refit_is_a_fit_on_train_and_validation() -> None:
    plain = fit_and_score_baseline(RFMLogisticRegression(), TASK, SPLITS, None)  # type: ignore[arg-type]
    first, refit = RFMLogisticRegression(), RFMLogisticRegression()
    metrics = fit_and_score_baseline(first, TASK, SPLITS, None, refit=refit)  # type: ignore[arg-type]
    direct = RFMLogisticRegression().fit(
        pl.concat([SPLITS["train"], SPLITS["val"]]), None, ["label_purchase"]
    )
    np.testing.assert_allclose(refit.coef, direct.coef, rtol=1e-9, atol=1e-12)
    assert not np.allclose(refit.coef, first.coef)  # validation rows changed the fit
    # val: the train-only fit (held out), unchanged by the refit; test: the refit's
    assert {k: v for k, v in metrics.items() if k.startswith("val/")} == {
        k: v for k, v in plain.items() if k.startswith("val/")
    }
    assert metrics["test/brier"] != plain["test/brier"]
    # the drifted (newest) window pulls the mean prediction toward the test base rate
    gap = {
        m: abs(r["test/mean_prediction"] - r["test/positive_rate"])
        for m, r in (("plain", plain), ("refit", metrics))
    }
    assert gap["refit"] < gap["plain"]


def test_gbm_refit_keeps_the_rounds_early_stopping_chose() -> None:
    require_module("lightgbm")  # the gbm extra; dev (CI) installs it
    settings = {"n_estimators": 40, "learning_rate": 0.2, "early_stopping_rounds": 3, "n_jobs": 1}
    first, refit = GradientBoostedTrees(**settings), GradientBoostedTrees(**settings)
    fit_and_score_baseline(first, TASK, SPLITS, None, refit=refit)  # type: ignore[arg-type]
    chosen = first.best_iterations["label_purchase"]
    assert 1 <= chosen < 40  # drift between windows: early stopping stops early
    assert refit.fixed_rounds == first.best_iterations
    assert refit.best_iterations == {"label_purchase": chosen}  # not all 40 trees
    assert refit.boosters[0].current_iteration() == chosen


def test_carry_selection_is_a_no_op_for_baselines_that_choose_nothing() -> None:
    fresh = RFMLogisticRegression()
    carry_selection(fresh, RFMLogisticRegression())
    assert not hasattr(fresh, "fixed_rounds")
