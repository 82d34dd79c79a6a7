"""The generator's drift switch and segment columns: off by default and byte-identical when
off; the past before the drift untouched; the behaviour after it changed; the oracle honest."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from engage_seq.common.times import parse_instant
from engage_seq.data.cache import cache_key
from engage_seq.data.ingest import IngestConfig
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import ColumnMapping, to_canonical
from engage_seq.data.sequences import CutoffPlan, build_samples
from engage_seq.data.tasks import HorizonTask
from engage_seq.data.validation import validate_events
from engage_seq.synthetic import (
    COUNTRIES,
    SyntheticEventSource,
    generate_events,
    purchase_probability,
)

DAY = 86_400


def _digest(events: pl.DataFrame) -> str:
    """sha256 over every column's values (strings joined, numbers as raw bytes): stable across
    Polars versions, unlike Polars' own row hash."""
    digest = hashlib.sha256()
    for name in events.columns:
        column = events[name]
        if column.dtype == pl.String:
            digest.update("\x00".join(column.to_list()).encode())
        else:
            digest.update(column.to_physical().to_numpy().tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (SyntheticEventSource(n_users=300, days=70, seed=1), "984afb1d35c0158b"),
        (
            SyntheticEventSource(n_users=3000, days=90, seed=5, replenishment_share=0.6),
            "d30f1f811426c124",
        ),
    ],
)
def test_switches_off_by_default_and_the_table_is_byte_identical(source, expected) -> None:
    """Digests taken with the generator as it was before the drift switch and the segment
    columns existed: with both off, not one byte of the data changed. (Change them only on
    purpose, and say so: every cached dataset and published figure depends on them.)"""
    assert source.drift_start is None and not source.user_attributes
    assert _digest(generate_events(source)) == expected


@pytest.mark.parametrize("share", [0.0, 0.6])
def test_events_before_the_drift_are_exactly_the_undrifted_ones(share: float) -> None:
    base = SyntheticEventSource(n_users=1500, days=63, seed=2, replenishment_share=share)
    drifted = replace(base, drift_start="2026-02-16")  # day 42
    plain, changed = generate_events(base), generate_events(drifted)
    before = pl.col("timestamp") < pl.datetime(2026, 2, 16, time_zone="UTC")
    assert plain.filter(before).height > 20_000
    assert changed.filter(before).equals(plain.filter(before))
    assert not changed.filter(~before).equals(plain.filter(~before))
    # still the generator's order: each user's events contiguous, by session start
    runs = changed.select((pl.col("user_id") != pl.col("user_id").shift()).sum()).item()
    assert runs == changed["user_id"].n_unique() - 1


def _shares(events: pl.DataFrame, column: str) -> dict[str, float]:
    counted = events[column].value_counts(normalize=True)
    return dict(zip(counted[column].to_list(), counted["proportion"].to_list(), strict=True))


def test_after_the_drift_the_channel_and_event_mix_move() -> None:
    base = SyntheticEventSource(n_users=3000, days=56, seed=6, replenishment_share=0.6)
    after = pl.col("timestamp") >= pl.datetime(2026, 2, 2, time_zone="UTC")  # day 28
    plain = generate_events(base).filter(after)
    drifted = generate_events(replace(base, drift_start="2026-02-02")).filter(after)
    weak = generate_events(replace(base, drift_start="2026-02-02", drift_strength=0.3))
    weak = weak.filter(after)
    channel, moved, half = (_shares(e, "channel") for e in (plain, drifted, weak))
    assert moved["app"] > channel["app"] + 0.2  # web browsing moved to the app
    assert moved["web"] < channel["web"] - 0.15
    assert moved["email"] < 0.7 * channel["email"]  # fewer e-mails, more pushes
    assert moved["push"] > 1.7 * channel["push"]
    assert channel["app"] < half["app"] < moved["app"]  # the strength scales the change
    kinds, moved_kinds = _shares(plain, "event_type"), _shares(drifted, "event_type")
    assert moved_kinds["purchase"] < 0.75 * kinds["purchase"]


def test_after_the_drift_an_open_cart_stops_predicting_a_purchase() -> None:
    """Same users, same histories (the cutoff is the drift date), different futures: the
    purchase-rate lift of a recent open cart collapses, the model-breaking change."""
    base = SyntheticEventSource(n_users=20_000, days=42, seed=4)
    cutoff = parse_instant("2026-02-02")  # day 28
    plan = CutoffPlan(
        train=(cutoff - 14 * DAY,), val=(cutoff - 7 * DAY,), test=(cutoff,), horizon_seconds=7 * DAY
    )

    def open_cart_lift(source: SyntheticEventSource) -> float:
        samples = build_samples(to_canonical(source.scan()), HorizonTask(), plan, max_len=64)
        last = (
            samples.filter(pl.col("split") == "test")
            .with_row_index("sample")
            .explode(["event_type", "ts"])
            .group_by("sample")
            .agg(
                pl.col("label_purchase").first(),
                pl.col("ts").filter(pl.col("event_type") == "add_to_cart").max().alias("cart"),
                pl.col("ts").filter(pl.col("event_type") == "purchase").max().alias("buy"),
            )
            .collect()
        )
        open_cart = (
            pl.col("cart").is_not_null()
            & (pl.col("buy").is_null() | (pl.col("cart") > pl.col("buy")))
            & (cutoff - pl.col("cart") < 2 * DAY)
        )
        rate = last.group_by(open_cart.alias("open")).agg(pl.col("label_purchase").mean())
        by = dict(zip(rate["open"].to_list(), rate["label_purchase"].to_list(), strict=True))
        return by[True] / by[False]

    before = open_cart_lift(base)
    after = open_cart_lift(replace(base, drift_start="2026-02-02"))
    assert before > 3.0  # measured 5.2
    assert after < 0.5 * before  # measured 1.4


def test_the_simulation_keeps_the_truth_before_the_drift() -> None:
    from engage_seq.synthetic.generator import _simulate

    base = SyntheticEventSource(n_users=2000, days=56, seed=8, replenishment_share=0.6)
    plain = _simulate(base)
    drifted = _simulate(replace(base, drift_start="2026-02-02"))
    # the population records the truth before the drift, which the oracle uses
    assert np.array_equal(plain.population.log_period, drifted.population.log_period)
    assert plain.sessions.t.size != drifted.sessions.t.size


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drift_start": "2025-12-01"}, "outside the simulated period"),
        ({"drift_start": "2026-03-16"}, "outside the simulated period"),  # = the end
        ({"drift_start": "next week"}, "ISO date"),
        (
            {"drift_start": "2026-01-20", "drift_strength": 0.0},
            r"drift_strength must be in \(0, 1\]",
        ),
        ({"drift_start": "2026-01-20", "drift_strength": 1.5}, "drift_strength"),
    ],
)
def test_drift_rejects_bad_settings(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_events(SyntheticEventSource(n_users=10, days=70, **options))


def test_the_oracle_answers_before_the_drift_and_refuses_after() -> None:
    base = SyntheticEventSource(n_users=400, days=56, seed=3, replenishment_share=0.6)
    drifted = replace(base, drift_start="2026-02-16")  # day 42
    cutoff = base.start_epoch + 35 * DAY  # the window ends exactly at the drift
    expected = purchase_probability(base, cutoff, 7 * DAY, replicates=16)
    assert purchase_probability(drifted, cutoff, 7 * DAY, replicates=16).equals(expected)
    with pytest.raises(ValueError, match="ends after drift_start"):
        purchase_probability(drifted, cutoff + 3600, 7 * DAY, replicates=16)


def test_user_attributes_are_extra_columns_and_change_nothing_else(tiny_events) -> None:
    source = SyntheticEventSource(n_users=300, days=70, seed=1, user_attributes=True)
    events = generate_events(source)
    assert events.columns[-2:] == ["platform", "country"]
    assert events.drop("platform", "country").equals(tiny_events)
    per_user = events.group_by("user_id").agg(
        pl.col("platform", "country").n_unique(),
        (pl.col("event_type") == "push_open").any().alias("opens_push"),
        pl.col("platform").first().alias("first_platform"),
    )
    assert (per_user["platform"] == 1).all() and (per_user["country"] == 1).all()
    # only app users receive pushes, and app users are exactly the ios/android ones
    pushers = per_user.filter("opens_push")["first_platform"].unique().to_list()
    assert pushers and set(pushers) <= {"ios", "android"}
    assert set(events["platform"].unique()) == {"ios", "android", "web"}
    assert set(events["country"].unique()) <= set(COUNTRIES)


def test_ingest_ignores_undeclared_attributes_and_reads_declared_ones() -> None:
    with_columns = SyntheticEventSource(n_users=200, days=14, seed=5, user_attributes=True)
    plain = validate_events(replace(with_columns, user_attributes=False).scan())
    ignored = validate_events(with_columns.scan())
    assert ignored.events.collect().equals(plain.events.collect())
    declared = validate_events(
        with_columns.scan(), ColumnMapping(categorical=("platform", "country"))
    )
    assert {"cat_platform", "cat_country"} <= set(declared.events.collect_schema().names())


def test_drift_and_attributes_are_part_of_the_cache_key() -> None:
    base = SyntheticEventSource(n_users=200, days=56)
    settings = (ColumnMapping(), HorizonTask(), SamplingConfig(), IngestConfig())
    keys = {
        cache_key(source, *settings)
        for source in (
            base,
            replace(base, drift_start="2026-02-02"),
            replace(base, drift_start="2026-02-02", drift_strength=0.5),
            replace(base, user_attributes=True),
        )
    }
    assert len(keys) == 4
    assert "drift from 2026-02-02" in replace(base, drift_start="2026-02-02").describe()
