"""The customer base's closed-form oracle against simulations of its own generative model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engage_seq.synthetic import CustomerBaseSource, customer_base_probability
from engage_seq.synthetic.customer_base_draw import (
    DROPOUT_A,
    DROPOUT_B,
    RATE_SHAPE,
    _repeat_orders,
)
from engage_seq.synthetic.customer_base_oracle import bgnbd_purchase_probability

AGE, HORIZON, ALPHA = 200.0, 60.0, 40.0  # operational days


@pytest.fixture(scope="module")
def simulated_futures() -> pl.DataFrame:
    """120k customers of one cohort (α fixed) simulated from acquisition to AGE + HORIZON:
    their history before AGE (x, t_x) and whether they bought in (AGE, AGE + HORIZON]."""
    n = 120_000
    rng = np.random.default_rng(7)
    rate = rng.gamma(RATE_SHAPE, 1.0 / ALPHA, n)
    dropout = rng.beta(DROPOUT_A, DROPOUT_B, n)
    customer, time = _repeat_orders(rng, np.zeros(n), rate, dropout, AGE + HORIZON)
    orders = pl.DataFrame({"customer": customer, "time": time})
    past = (
        orders.filter(pl.col("time") <= AGE)
        .group_by("customer")
        .agg(pl.len().alias("x"), pl.col("time").max().alias("t_x"))
    )
    future = orders.filter(pl.col("time") > AGE).select("customer").unique()
    return (
        pl.DataFrame({"customer": np.arange(n)})
        .join(past, on="customer", how="left")
        .join(future.with_columns(bought=pl.lit(1)), on="customer", how="left")
        .select(
            pl.col("x").fill_null(0),
            pl.col("t_x").fill_null(0.0),
            pl.col("bought").fill_null(0),
        )
    )


@pytest.mark.parametrize(
    ("x", "t_low", "t_high"),
    [(0, 0.0, 0.0), (1, 0.0, 50.0), (1, 150.0, 200.0), (3, 100.0, 170.0), (3, 185.0, 200.0)],
)
def test_oracle_matches_monte_carlo_of_the_generator(
    simulated_futures: pl.DataFrame, x: int, t_low: float, t_high: float
) -> None:
    """For customers with a given history the oracle's mean equals the simulated purchase
    rate: E[oracle | group] = E[bought | group] because the oracle is E[bought | x, t_x]."""
    group = simulated_futures.filter((pl.col("x") == x) & pl.col("t_x").is_between(t_low, t_high))
    assert group.height > 400
    oracle = bgnbd_purchase_probability(
        group["x"].to_numpy(), group["t_x"].to_numpy(), AGE, ALPHA, HORIZON
    )
    observed = group["bought"].mean()
    standard_error = np.sqrt(oracle.mean() * (1 - oracle.mean()) / group.height)
    assert abs(oracle.mean() - observed) < 4 * standard_error + 1e-3


def test_oracle_closed_form_values() -> None:
    # x = 0: alive for sure, P = 1 - (α+T / α+T+H)^r
    assert bgnbd_purchase_probability(0, 0.0, 10.0, 30.0, 20.0) == pytest.approx(
        1 - (40 / 60) ** RATE_SHAPE
    )
    # a long silence after many purchases means probably gone; a recent purchase, alive
    stale = bgnbd_purchase_probability(10, 20.0, 300.0, 30.0, 91.0)
    fresh = bgnbd_purchase_probability(10, 299.0, 300.0, 30.0, 91.0)
    assert stale < 0.01 < 0.8 < fresh
    alive = 1 / (1 + DROPOUT_A / (DROPOUT_B + 9) * (330 / 329) ** (RATE_SHAPE + 10))
    assert fresh == pytest.approx(alive * (1 - (330 / 421) ** (RATE_SHAPE + 10)))
    # huge counts stay finite (logs, not powers)
    assert np.isfinite(bgnbd_purchase_probability(5000, 10.0, 700.0, 30.0, 91.0))


def test_oracle_is_calibrated_on_a_simulated_population() -> None:
    """The whole path (clock, acquisition cohorts, table, oracle join) on one cutoff: mean
    oracle probability vs the observed rate in five bins of the oracle."""
    source = CustomerBaseSource(n_customers=20_000, days=400, acquisition_days=300, seed=5)
    cutoff = source.start_epoch + 280 * 86_400
    horizon = 91 * 86_400
    truth = customer_base_probability(source, cutoff, horizon)
    table = source.scan().collect()
    seconds = pl.col("timestamp").dt.epoch("s")
    bought = table.filter(seconds.is_between(cutoff, cutoff + horizon, closed="left"))
    history = table.filter(seconds < cutoff)["user_id"].unique()
    assert set(truth["user_id"]) == set(history)  # exactly the customers acquired before c
    joined = truth.join(
        bought.select("user_id").unique().with_columns(y=pl.lit(1.0)), on="user_id", how="left"
    ).with_columns(
        pl.col("y").fill_null(0.0), bin=pl.col("probability").rank("ordinal") * 5 // (pl.len() + 1)
    )
    assert joined["probability"].mean() == pytest.approx(joined["y"].mean(), abs=0.01)
    bins = joined.group_by("bin").agg(pl.col("probability").mean(), pl.col("y").mean(), pl.len())
    for predicted, observed, n in bins.select("probability", "y", "len").iter_rows():
        assert abs(predicted - observed) < 4 * np.sqrt(predicted * (1 - predicted) / n) + 0.005
    assert bins["y"].max() - bins["y"].min() > 0.3  # and it separates buyers from the rest
