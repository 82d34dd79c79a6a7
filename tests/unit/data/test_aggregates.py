"""Full-history aggregates (engage_seq.data.aggregates): known answers on hand-made histories,
the whole history (not the max_len window), standardisation and untrusted scaling."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from engage_seq.data.aggregates import (
    aggregate_names,
    aggregates_at_cutoff,
    fit_aggregate_scaling,
    ordered_aggregate_scaling,
    standardised_aggregates,
)

DAY = 86_400
CUTOFF = 1_000 * DAY


def _events() -> pl.LazyFrame:
    """User a: purchases 400 and 20 days before the cutoff, a view 3 days before, one event
    exactly at the cutoff (a label, never a feature); user b: one view, amount missing."""
    return pl.LazyFrame(
        {
            "user_key": ["a", "a", "a", "a", "b"],
            "ts": [CUTOFF - 400 * DAY, CUTOFF - 20 * DAY, CUTOFF - 3 * DAY, CUTOFF, CUTOFF - DAY],
            "event_type": ["purchase", "purchase", "view", "purchase", "view"],
            "num_amount": [10.0, 30.0, None, 1000.0, float("nan")],
        }
    )


def _row(user: str) -> dict[str, float]:
    found = aggregates_at_cutoff(_events(), CUTOFF, ["purchase"], ["num_amount"]).collect()
    return found.filter(pl.col("user_key") == user).drop("user_key").row(0, named=True)


def test_names_have_a_fixed_documented_order() -> None:
    names = aggregate_names(["purchase"], ["num_amount"])
    assert names[:7] == [
        "recency_h", "tenure_h", "count_7d", "count_30d", "count_90d", "count_365d", "count_all",
    ]  # fmt: skip
    assert names[7:9] == ["recency_h/purchase", "count_7d/purchase"]
    assert names[12:14] == ["count_all/purchase", "first_h/purchase"]
    assert names[-2:] == ["sum/num_amount", "mean/num_amount"]
    assert len(names) == 7 + 7 + 2
    found = aggregates_at_cutoff(_events(), CUTOFF, ["purchase"], ["num_amount"]).collect()
    assert found.columns == ["user_key", *(f"agg_{n}" for n in names)]


def test_known_answers_over_the_whole_history() -> None:
    a = _row("a")
    assert a["agg_recency_h"] == pytest.approx(math.log1p(72))
    assert a["agg_tenure_h"] == pytest.approx(math.log1p(400 * 24))  # older than every window
    assert [a[f"agg_count_{w}"] for w in ("7d", "30d", "90d", "365d", "all")] == pytest.approx(
        [math.log1p(n) for n in (1, 2, 2, 2, 3)]
    )
    assert a["agg_recency_h/purchase"] == pytest.approx(math.log1p(20 * 24))
    assert a["agg_count_all/purchase"] == pytest.approx(math.log1p(2))  # not the one at cutoff
    assert a["agg_first_h/purchase"] == pytest.approx(math.log1p(400 * 24))  # the older one
    assert a["agg_sum/num_amount"] == pytest.approx(math.log1p(40))  # missing skipped
    assert a["agg_mean/num_amount"] == pytest.approx(math.log1p(20))


def test_a_user_without_target_events_or_values() -> None:
    b = _row("b")
    assert b["agg_recency_h/purchase"] == b["agg_first_h/purchase"] == -1.0
    assert b["agg_count_all/purchase"] == 0.0
    assert b["agg_sum/num_amount"] == 0.0 and b["agg_mean/num_amount"] == 0.0  # NaN = missing
    assert b["agg_recency_h"] == b["agg_tenure_h"] == pytest.approx(math.log1p(24))


def test_scaling_is_fitted_standardised_clipped_and_checked() -> None:
    train = pl.DataFrame({"agg_x": [1.0, 3.0, 5.0], "agg_c": [2.0, 2.0, 2.0]})
    scaling = fit_aggregate_scaling(train, ["x", "c"])
    assert scaling == {"x": {"mean": 3.0, "std": 2.0}, "c": {"mean": 2.0, "std": 1.0}}
    frame = pl.DataFrame({"agg_x": [5.0, 100.0, None], "agg_c": [2.0, 2.0, 3.0]})
    found = standardised_aggregates(frame, scaling)
    assert found.dtype == np.float32
    np.testing.assert_allclose(found, [[1.0, 0.0], [5.0, 0.0], [0.0, 1.0]])
    # a JSON round trip sorts keys: the order comes from the names
    assert list(ordered_aggregate_scaling(dict(sorted(scaling.items())), ["x", "c"])) == ["x", "c"]
    with pytest.raises(ValueError, match="lack aggregate"):
        fit_aggregate_scaling(train, ["x", "missing"])


@pytest.mark.parametrize(
    ("scaling", "names", "message"),
    [
        ({"x": {"mean": 0.0, "std": 1.0}}, ["x", "y"], "exactly"),
        ({"x": {"mean": float("nan"), "std": 1.0}}, ["x"], "finite"),
        ({"x": {"mean": 0.0, "std": 0.0}}, ["x"], "positive"),
        ({"x": {"mean": "0", "std": 1.0}}, ["x"], "finite"),
        ({"x": [0.0, 1.0]}, ["x"], "finite"),
        ({"x": {"mean": 0.0, "std": 1.0}}, "x", "list of strings"),
    ],
)
def test_bad_scaling_metadata_is_refused(scaling, names, message) -> None:
    with pytest.raises(ValueError, match=message):
        ordered_aggregate_scaling(scaling, names)
