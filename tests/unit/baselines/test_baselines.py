"""Baselines: exact aggregates on hand-written samples, planted signals, exact Markov
probabilities, JSON round trips and clear errors."""

from __future__ import annotations

import inspect
import json
import math
import sys

import numpy as np
import polars as pl
import pytest
from helpers import REPO
from hydra.utils import instantiate
from omegaconf import OmegaConf

from engage_seq.baselines import (
    BASELINES,
    NEVER_LOG_HOURS,
    UNKNOWN_CLASS,
    AggregateFeatures,
    GradientBoostedTrees,
    MarkovNextEvent,
    MostFrequentNextEvent,
    RFMLogisticRegression,
    fit_logistic,
)
from engage_seq.common.times import parse_instant

H = 3600
D = 86_400
C = parse_instant("2026-01-10")  # midnight UTC
CONF = REPO / "conf" / "model"


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC with tied scores sharing their average rank."""
    y = np.asarray(y, dtype=bool)
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def hand_samples() -> pl.DataFrame:
    """Users 1-2 form the training set; user 3 brings an unseen type and channel and a NaN."""
    rows = [
        # 1: kept history of 3 out of 10 events; C - 2h is the previous UTC day
        (10, 2 * H, ["page_view", "add_to_cart", "page_view"], ["web", "web", "app"],
         [C - 40 * D, C - 3 * D, C - 2 * H], [5.0, None, 2.5], True),
        # 2: one event exactly 1 day before the cutoff (inside the 1-day window), no value
        (1, D, ["purchase"], ["email"], [C - D], [None], False),
        # 3: fax_sent / fax never seen in training
        (3, 3 * H + 1800, ["fax_sent", "purchase", "purchase"], ["fax", "web", "web"],
         [C - 5 * H, C - 4 * H, C - 4 * H + 1800], [float("nan"), 4.0, -1.0], True),
    ]  # fmt: skip
    columns = ["n_history", "seconds_since_last", "event_type", "channel", "ts", "num_value"]
    frame = pl.DataFrame(
        [r[:-1] for r in rows], schema=columns, orient="row", infer_schema_length=None
    )
    return frame.with_columns(
        pl.lit("train").alias("split"),
        pl.lit(C, dtype=pl.Int64).alias("cutoff"),
        pl.Series("user_key", [1, 2, 3], dtype=pl.UInt64),
        pl.col("n_history").cast(pl.UInt32),
        pl.Series("label_purchase", [r[-1] for r in rows]),
    )


def test_aggregate_features_are_exact() -> None:
    samples = hand_samples()
    features = AggregateFeatures().fit(samples.head(2))
    assert features.event_types == ["add_to_cart", "page_view", "purchase"]
    assert features.channels == ["app", "email", "web"]
    assert features.numeric_columns == ["num_value"]
    x = features.transform(samples)
    assert x.dtype == np.float32
    assert x.shape == (3, len(features.names))
    got = [dict(zip(features.names, row.tolist(), strict=True)) for row in x]
    never = NEVER_LOG_HOURS
    expected = [
        {
            "log_hours_since_last": math.log1p(2), "log1p_n_history": math.log1p(10),
            "events_1d": 1, "events_7d": 2, "events_30d": 2, "active_days": 3,
            "num_value_sum": 7.5, "num_value_mean": 3.75,
            "count_event=add_to_cart": 1, "count_event=page_view": 2, "count_event=purchase": 0,
            "count_channel=app": 1, "count_channel=email": 0, "count_channel=web": 2,
            "log_hours_since=add_to_cart": math.log1p(72),
            "log_hours_since=page_view": math.log1p(2), "log_hours_since=purchase": never,
            "never=add_to_cart": 0, "never=page_view": 0, "never=purchase": 1,
            "share=add_to_cart": 1 / 3, "share=page_view": 2 / 3, "share=purchase": 0,
        },
        {
            "log_hours_since_last": math.log1p(24), "log1p_n_history": math.log1p(1),
            "events_1d": 1, "events_7d": 1, "events_30d": 1, "active_days": 1,
            "num_value_sum": 0, "num_value_mean": 0,
            "count_event=add_to_cart": 0, "count_event=page_view": 0, "count_event=purchase": 1,
            "count_channel=app": 0, "count_channel=email": 1, "count_channel=web": 0,
            "log_hours_since=add_to_cart": never, "log_hours_since=page_view": never,
            "log_hours_since=purchase": math.log1p(24),
            "never=add_to_cart": 1, "never=page_view": 1, "never=purchase": 0,
            "share=add_to_cart": 0, "share=page_view": 0, "share=purchase": 1,
        },
        {
            "log_hours_since_last": math.log1p(3.5), "log1p_n_history": math.log1p(3),
            "events_1d": 3, "events_7d": 3, "events_30d": 3, "active_days": 1,
            "num_value_sum": 3.0, "num_value_mean": 1.5,  # NaN ignored like null
            "count_event=add_to_cart": 0, "count_event=page_view": 0, "count_event=purchase": 2,
            "count_channel=app": 0, "count_channel=email": 0, "count_channel=web": 2,
            "log_hours_since=add_to_cart": never, "log_hours_since=page_view": never,
            "log_hours_since=purchase": math.log1p(3.5),
            "never=add_to_cart": 1, "never=page_view": 1, "never=purchase": 0,
            "share=add_to_cart": 0, "share=page_view": 0, "share=purchase": 2 / 3,
        },
    ]  # fmt: skip
    for row, want in zip(got, expected, strict=True):
        assert row.keys() == want.keys()
        for name, value in want.items():
            assert row[name] == pytest.approx(value, rel=1e-6), name
    # a lazy frame gives the same matrix; a narrower vocabulary keeps the most frequent
    np.testing.assert_array_equal(features.transform(samples.lazy()), x)
    assert AggregateFeatures(max_categories=1).fit(samples).event_types == ["purchase"]


TYPES = ("page_view", "product_view", "add_to_cart", "email_open")
CHANNELS = ("web", "app", "email")


def random_samples(n: int, seed: int, noise: float = 0.1) -> pl.DataFrame:
    """Random histories of 1-8 events; the label is 1 with probability 0.7 after an
    add_to_cart and ``noise`` otherwise (0 noise: separable by the add_to_cart count)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, n)
    row = np.repeat(np.arange(n), lengths)
    events = pl.DataFrame(
        {
            "row": row,
            "event_type": rng.choice(TYPES, row.size),
            "channel": rng.choice(CHANNELS, row.size),
            "ts": C - rng.integers(60, 40 * D, row.size),
        }
    ).sort("row", "ts")
    samples = events.group_by("row", maintain_order=True).agg("event_type", "channel", "ts")
    has_cart = samples["event_type"].list.contains("add_to_cart").to_numpy()
    positive_rate = np.where(has_cart, 0.7 if noise else 1.0, noise)
    return samples.drop("row").with_columns(
        pl.lit(C, dtype=pl.Int64).alias("cutoff"),
        (pl.col("event_type").list.len() + pl.Series(rng.integers(0, 5, n))).alias("n_history"),
        (C - pl.col("ts").list.last()).alias("seconds_since_last"),
        pl.Series("label_purchase", rng.random(n) < positive_rate),
        pl.Series("label_constant", np.zeros(n, dtype=bool)),
    )


def oracle_auroc(samples: pl.DataFrame) -> float:
    """AUROC of the true rule (has an add_to_cart), about 0.78 at 10% noise."""
    has_cart = samples["event_type"].list.contains("add_to_cart").to_numpy()
    return auroc(samples["label_purchase"].to_numpy(), has_cart.astype(float))


def test_logistic_solver_matches_a_hand_solution() -> None:
    # x = -2, -1, 1, 2 with labels 0, 0, 1, 1 is separable; by symmetry the intercept is 0
    # and the L2 optimum solves w = 4 sigmoid(-2w) + 2 sigmoid(-w)
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    coef, intercept, iterations = fit_logistic(x, y, l2=1.0)

    def sigmoid(z: float) -> float:
        return 1 / (1 + math.exp(-z))

    lo, hi = 0.0, 10.0
    for _ in range(100):
        w = (lo + hi) / 2
        lo, hi = (w, hi) if w < 4 * sigmoid(-2 * w) + 2 * sigmoid(-w) else (lo, w)
    assert coef[0] == pytest.approx(w, abs=1e-8)
    assert intercept == pytest.approx(0.0, abs=1e-8)
    assert iterations < 20
    # a much weaker penalty still gives a finite (and larger) weight
    weak, _, _ = fit_logistic(x, y, l2=1e-3)
    assert np.isfinite(weak).all() and weak[0] > 2 * coef[0]


def test_logistic_regression_recovers_a_planted_signal() -> None:
    train, test = random_samples(3000, seed=1), random_samples(2000, seed=2)
    model = RFMLogisticRegression().fit(train, random_samples(1000, seed=3), ["label_purchase"])
    p = model.predict_proba(test)
    assert p.shape == (test.height, 1) and p.dtype == np.float64
    assert auroc(test["label_purchase"].to_numpy(), p[:, 0]) > oracle_auroc(test) - 0.02 > 0.7
    names = model.features.names
    # "never added to cart" is the signal: it gets the most negative weight
    assert names[int(np.argmin(model.coef[:, 0]))] == "never=add_to_cart"
    assert set(model.val_log_loss) == {"label_purchase"}


def test_logistic_regression_stays_finite_on_separable_data() -> None:
    train = random_samples(500, seed=4, noise=0.0)  # label == has an add_to_cart
    for l2 in (1.0, 1e-4):
        model = RFMLogisticRegression(l2=l2).fit(train, None, ["label_purchase"])
        assert np.isfinite(model.coef).all() and np.isfinite(model.intercept).all()
        p = model.predict_proba(train)[:, 0]
        assert np.isfinite(p).all()
        assert auroc(train["label_purchase"].to_numpy(), p) == 1.0
    # constant features (no channel ever differs, no numeric column) do not break the fit
    assert (model.std > 0).all()


@pytest.mark.slow  # two LightGBM fits
def test_gbm_recovers_a_planted_signal_deterministically() -> None:
    train, val, test = (random_samples(n, seed=s) for n, s in ((3000, 1), (1000, 3), (2000, 2)))
    fits = [
        GradientBoostedTrees(n_estimators=60, learning_rate=0.1, early_stopping_rounds=10).fit(
            train, val, ["label_purchase"]
        )
        for _ in range(2)
    ]
    p = [m.predict_proba(test) for m in fits]
    assert p[0].shape == (test.height, 1) and p[0].dtype == np.float64
    np.testing.assert_array_equal(p[0], p[1])
    assert fits[0].to_dict()["models"] == fits[1].to_dict()["models"]
    assert 1 <= fits[0].best_iterations["label_purchase"] <= 60
    assert auroc(test["label_purchase"].to_numpy(), p[0][:, 0]) > oracle_auroc(test) - 0.02 > 0.7


def next_event_samples() -> pl.DataFrame:
    rows = [
        (["x", "a"], "b"),
        (["a"], "b"),
        (["b", "a"], "c"),
        (["a"], "yyy"),  # label outside the classes -> unknown
        (["a", "b"], "a"),
        (["zzz"], "a"),  # previous event outside the classes -> unknown
        ([], "c"),  # no history: counts in the marginal only
        (["a"], None),  # unlabelled: skipped
    ]
    return pl.DataFrame(rows, schema=["event_type", "label_next_event"], orient="row")


def test_markov_gives_exact_smoothed_probabilities() -> None:
    model = MarkovNextEvent(alpha=1.0).fit(next_event_samples(), None, event_types=["a", "b", "c"])
    assert model.classes == [UNKNOWN_CLASS, "a", "b", "c"]
    marginal = [2 / 11, 3 / 11, 3 / 11, 3 / 11]  # counts 1, 2, 2, 2 over 7 labels, K = 4
    after_a = [2 / 8, 1 / 8, 3 / 8, 2 / 8]  # a -> unknown 1, b 2, c 1 (4 transitions)
    after_b = [1 / 5, 2 / 5, 1 / 5, 1 / 5]  # b -> a
    after_unknown = [1 / 5, 2 / 5, 1 / 5, 1 / 5]  # zzz -> a
    queries = pl.DataFrame({"event_type": [["b", "a"], ["a", "b"], ["c"], ["qqq"], [], ["a", "c"]]})
    expected = [after_a, after_b, marginal, after_unknown, marginal, marginal]
    p = model.predict_proba(queries)
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    assert model.seen_previous == [True, True, True, False]
    frequent = MostFrequentNextEvent().fit(next_event_samples(), event_types=["a", "b", "c"])
    np.testing.assert_allclose(frequent.predict_proba(queries), [marginal] * 6, rtol=1e-12)


def test_round_trips_through_json_give_identical_predictions() -> None:
    train, val, test = random_samples(800, seed=1), random_samples(300, seed=3), hand_samples()
    horizon = [
        RFMLogisticRegression().fit(train, val, ["label_purchase"]),
        GradientBoostedTrees(n_estimators=30).fit(train, val, ["label_purchase"]),
    ]
    events = next_event_samples()
    next_event = [
        MarkovNextEvent().fit(events, event_types=["a", "b"]),
        MostFrequentNextEvent(alpha=0.5).fit(events, event_types=["a", "b"]),
    ]
    for model, queries in [*[(m, test) for m in horizon], *[(m, events) for m in next_event]]:
        restored = type(model).from_dict(json.loads(json.dumps(model.to_dict())))
        np.testing.assert_array_equal(restored.predict_proba(queries), model.predict_proba(queries))
        assert restored.to_dict() == model.to_dict()
    with pytest.raises(ValueError, match="expected a saved 'markov'"):
        MarkovNextEvent.from_dict(horizon[0].to_dict())


@pytest.mark.parametrize("cls", [RFMLogisticRegression, GradientBoostedTrees])
def test_a_target_without_positives_is_a_clear_error(cls) -> None:
    train = random_samples(200, seed=5)
    with pytest.raises(ValueError, match=r"'label_constant' has no positive samples in the train"):
        cls().fit(train, None, ["label_purchase", "label_constant"])
    val = train.with_columns(pl.lit(False).alias("label_purchase"))
    with pytest.raises(ValueError, match=r"'label_purchase' has no positive samples in the val"):
        cls().fit(train, val, ["label_purchase"])


def test_gbm_without_lightgbm_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # makes `import lightgbm` fail
    with pytest.raises(ImportError, match=r"pip install 'engage_seq\[gbm\]'"):
        GradientBoostedTrees().fit(random_samples(100, seed=6), None, ["label_purchase"])


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_hydra_configs_build_the_registered_baselines(name: str) -> None:
    cls = BASELINES[name]
    assert cls.task_type in ("horizon", "next_event")
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    model = instantiate(cfg)
    assert type(model) is cls
    defaults = {
        p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self"
    }  # fmt: skip
    keys = {k: v for k, v in cfg.items() if k != "_target_"}
    assert keys == defaults
