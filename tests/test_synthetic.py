"""The built-in generator: seeded, well-formed, and with signal that only order reveals."""

from __future__ import annotations

import polars as pl

from engage_seq.schema import to_canonical
from engage_seq.sequences import CutoffPlan, HorizonTask, build_samples, parse_instant
from engage_seq.synthetic import CHANNELS, EVENT_TYPES, SyntheticEventSource


def test_same_seed_same_table_other_seed_other_table(tiny_source, tiny_events) -> None:
    assert tiny_source.scan().collect().equals(tiny_events)
    other = SyntheticEventSource(n_users=300, days=70, seed=2).scan().collect()
    assert not other.equals(tiny_events)


def test_schema_and_vocabulary(tiny_events) -> None:
    assert tiny_events.schema == pl.Schema(
        {
            "user_id": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "event_type": pl.String,
            "channel": pl.String,
        }
    )
    assert set(tiny_events["event_type"].unique()) <= set(EVENT_TYPES)
    assert set(tiny_events["channel"].unique()) == set(CHANNELS)
    assert tiny_events.null_count().sum_horizontal().item() == 0


def test_daily_seasonality() -> None:
    events = SyntheticEventSource(n_users=2000, days=28, seed=3).scan().collect()
    hours = events["timestamp"].dt.hour()
    evening = (hours.is_between(18, 21)).sum()
    night = (hours.is_between(2, 5)).sum()
    assert evening > 5 * night


def test_open_recent_cart_predicts_purchase() -> None:
    """An add_to_cart after the last purchase, within 2 days of the cutoff, must raise the
    purchase rate: the generator's order- and timing-dependent signal."""
    events = to_canonical(SyntheticEventSource(n_users=6000, days=70, seed=4).scan())
    d = 86_400
    test = parse_instant("2026-03-09")
    plan = CutoffPlan(
        train=(test - 14 * d,), val=(test - 7 * d,), test=(test,), horizon_seconds=7 * d
    )
    samples = build_samples(events, HorizonTask(), plan, max_len=64).collect()
    last = (
        samples.with_row_index("sample")
        .explode(["event_type", "ts"])
        .group_by("sample")
        .agg(
            pl.col("cutoff").first(),
            pl.col("label_purchase").first(),
            pl.col("ts").filter(pl.col("event_type") == "add_to_cart").max().alias("cart"),
            pl.col("ts").filter(pl.col("event_type") == "purchase").max().alias("buy"),
        )
    )
    open_cart = (
        pl.col("cart").is_not_null()
        & (pl.col("buy").is_null() | (pl.col("cart") > pl.col("buy")))
        & (pl.col("cutoff") - pl.col("cart") < 2 * d)
    )
    rates = (
        last.group_by(open_cart.alias("open_cart"))
        .agg(pl.col("label_purchase").mean())
        .to_dict(as_series=False)
    )
    rate = dict(zip(rates["open_cart"], rates["label_purchase"], strict=True))
    assert rate[True] > 2.5 * rate[False]
