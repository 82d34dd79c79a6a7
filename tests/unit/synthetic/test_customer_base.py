"""The customer-base generator: seeded, shaped like a transaction export, and doing what its
specification says (acquisition, dropout, order lines, operational time)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engage_seq.synthetic import CustomerBaseSource, generate_customer_base
from engage_seq.synthetic.customer_base import CustomerBaseSettingsError, simulate_customer_base
from engage_seq.synthetic.customer_base_draw import CHANNELS, _repeat_orders
from engage_seq.synthetic.weekly_clock import DAY_OF_WEEK, SECONDS_PER_DAY, WeeklyClock

TINY = CustomerBaseSource(n_customers=300, days=200, acquisition_days=150, seed=3)


@pytest.fixture(scope="module")
def tiny_table() -> pl.DataFrame:
    return generate_customer_base(TINY)


def test_columns_look_like_a_transaction_export(tiny_table: pl.DataFrame) -> None:
    assert tiny_table.schema == pl.Schema(
        {
            "user_id": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "channel": pl.String,
            "quantity": pl.Int64,
            "amount": pl.Float64,
        }
    )
    assert set(tiny_table["channel"].unique()) <= set(CHANNELS)
    assert tiny_table["quantity"].min() >= 1 and tiny_table["amount"].min() >= 0.01
    assert (tiny_table["amount"] * 100 - (tiny_table["amount"] * 100).round()).abs().max() < 1e-6


def test_event_type_column_only_on_request(tiny_table: pl.DataFrame) -> None:
    typed = generate_customer_base(CustomerBaseSource(**{**vars(TINY), "with_event_type": True}))
    assert typed.columns == ["user_id", "timestamp", "event_type", "channel", "quantity", "amount"]
    assert typed["event_type"].unique().to_list() == ["purchase"]
    assert typed.drop("event_type").equals(tiny_table)


def test_lines_share_their_order_timestamp_and_channel(tiny_table: pl.DataFrame) -> None:
    draw, _ = simulate_customer_base(TINY)
    orders = tiny_table.group_by("user_id", "timestamp").agg(
        pl.len().alias("lines"), pl.col("channel").n_unique().alias("channels")
    )
    assert orders.height == draw.order_customer.size  # no two orders of one user share a second
    assert orders["channels"].max() == 1
    assert 1.6 < orders["lines"].mean() < 2.0  # 1 + Poisson(0.8)


def test_history_starts_at_acquisition_inside_the_window(tiny_table: pl.DataFrame) -> None:
    draw, _ = simulate_customer_base(TINY)
    first = tiny_table.group_by("user_id").agg(pl.col("timestamp").min().dt.epoch("s"))
    first = first.sort("user_id")["timestamp"].to_numpy() - TINY.start_epoch
    assert first.size == TINY.n_customers  # every customer has their acquisition order
    np.testing.assert_array_equal(first, np.floor(draw.first_seconds).astype(np.int64))
    assert first.max() < TINY.acquisition_days * SECONDS_PER_DAY
    last = tiny_table["timestamp"].max().timestamp() - TINY.start_epoch
    assert last < TINY.days * SECONDS_PER_DAY
    assert (tiny_table["user_id"] + tiny_table["timestamp"].cast(pl.String)).is_sorted()


def test_same_seed_same_table_other_seed_other_table(tiny_table: pl.DataFrame) -> None:
    simulate_customer_base.cache_clear()
    assert generate_customer_base(TINY).equals(tiny_table)
    other = generate_customer_base(CustomerBaseSource(**{**vars(TINY), "seed": 4}))
    assert not other.equals(tiny_table)


def test_day_resolution_floors_times_and_keeps_everything_else(tiny_table: pl.DataFrame) -> None:
    daily = generate_customer_base(CustomerBaseSource(**{**vars(TINY), "day_resolution": True}))
    assert (daily["timestamp"].dt.epoch("s") % SECONDS_PER_DAY == 0).all()
    assert daily.drop("timestamp").equals(tiny_table.drop("timestamp"))
    np.testing.assert_array_equal(
        daily["timestamp"].dt.epoch("s").to_numpy(),
        tiny_table["timestamp"].dt.epoch("s").to_numpy() // SECONDS_PER_DAY * SECONDS_PER_DAY,
    )


def test_dropout_happens_after_repeat_purchases_only() -> None:
    rng = np.random.default_rng(0)
    start = np.zeros(4000)
    rate = np.full(4000, 0.05)
    customers, _ = _repeat_orders(rng, start, rate, np.ones(4000), 100.0)
    assert np.bincount(customers).max() == 1  # p = 1: gone right after the first repeat
    # P(a repeat within 100 days) = 1 - exp(-5): nobody left at the acquisition order
    assert np.unique(customers).size / 4000 == pytest.approx(1 - np.exp(-5.0), abs=0.01)
    customers, times = _repeat_orders(rng, start, rate, np.zeros(4000), 100.0)
    assert customers.size / 4000 == pytest.approx(5.0, rel=0.03)  # p = 0: Poisson(λ · 100)
    assert times.max() < 100.0


def test_weekly_clock_is_exact_and_invertible() -> None:
    monday = WeeklyClock(first_weekday=0)
    days = np.array([0, 5, 6, 7, 70]) * float(SECONDS_PER_DAY)
    np.testing.assert_allclose(monday.operational(days), [0.0, 4.65, 5.95, 7.0, 70.0])
    assert sum(DAY_OF_WEEK) == pytest.approx(7.0)  # already mean 1: Saturday's day is 1.3
    saturday = WeeklyClock(first_weekday=5)  # day 0 is a Saturday
    assert float(saturday.operational(float(SECONDS_PER_DAY))) == pytest.approx(1.3)
    # the time-of-day profile moves time within a day: half a clock day is not half of Λ's
    assert float(monday.operational(SECONDS_PER_DAY / 2)) < 0.85 / 2
    seconds = np.random.default_rng(0).uniform(0, 400 * SECONDS_PER_DAY, 1000)
    for clock in (monday, saturday):
        np.testing.assert_allclose(clock.seconds(clock.operational(seconds)), seconds, atol=1e-4)


def test_settings_out_of_range_name_the_key() -> None:
    with pytest.raises(CustomerBaseSettingsError, match="acquisition_days"):
        CustomerBaseSource(days=100, acquisition_days=200)
    with pytest.raises(CustomerBaseSettingsError, match="start must be a date"):
        CustomerBaseSource(start="2024-01-01T10:00")
