"""The TorchScript twin of the full-history aggregates equals the Polars code that built the
training samples, on random tiny histories with every awkward case."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from engage_seq.data.aggregates import WINDOW_DAYS, aggregate_names, aggregates_at_cutoff
from engage_seq.serving.aggregates_scripted import history_aggregates, standardise_aggregates
from engage_seq.serving.export import quiet_jit_deprecation

DAY = 86_400
CUTOFF = 2_000 * DAY
TARGETS = ["purchase", "refund"]
NUMERIC = ["num_amount", "num_quantity"]


def random_events(seed: int, n_users: int = 12) -> pl.DataFrame:
    """Users of 1-9 events over up to two years (older than every window), some exactly at
    the cutoff or after it, numerics missing (null or NaN) or negative, some users without
    any target event."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        n = 1 if user % 4 == 0 else int(rng.integers(1, 10))  # single-event users
        ages = rng.integers(1, 730 * DAY, n)
        if user % 3 == 1:
            ages[0] = 0  # an event exactly at the cutoff: a label, never counted
        if user % 5 == 2:
            ages[-1] = -DAY  # after the cutoff
        ages[-1] = max(ages[-1], 1) if n == 1 else ages[-1]  # someone must have history
        for age in ages:
            kind = "view" if user % 6 == 5 else str(rng.choice(["purchase", "refund", "view"]))
            amount = float(rng.normal(20, 30))
            quantity = float(rng.integers(-2, 5))
            draw = rng.random()
            amount = None if draw < 0.15 else (float("nan") if draw < 0.3 else amount)
            rows.append((f"u{user}", CUTOFF - int(age), kind, amount, quantity))
    frame = pl.DataFrame(
        rows,
        schema=["user_key", "ts", "event_type", "num_amount", "num_quantity"],
        orient="row",
    )
    return frame.sort("user_key", "ts")


def twin(frame: pl.DataFrame, scripted) -> dict[str, np.ndarray]:
    """Each user's aggregates from the scripted twin, on its events before the cutoff."""
    out = {}
    for (user,), events in frame.filter(pl.col("ts") < CUTOFF).group_by(
        "user_key", maintain_order=True
    ):
        history = torch.tensor(events["ts"].to_numpy(), dtype=torch.long)
        kinds = events["event_type"].to_list()
        is_target = [torch.tensor([k == t for k in kinds]) for t in TARGETS]
        numeric = torch.tensor(
            events.select(pl.col(NUMERIC).cast(pl.Float64).fill_null(float("nan"))).to_numpy()
        )
        found = scripted(history, is_target, numeric, CUTOFF, list(WINDOW_DAYS))
        out[user] = found.numpy()
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_torchscript_twin_equals_the_polars_aggregates(seed: int) -> None:
    frame = random_events(seed)
    with quiet_jit_deprecation():
        scripted = torch.jit.script(history_aggregates)
    expected = aggregates_at_cutoff(frame.lazy(), CUTOFF, TARGETS, NUMERIC).collect()
    found = twin(frame, scripted)
    names = aggregate_names(TARGETS, NUMERIC)
    assert sorted(found) == sorted(expected["user_key"].to_list())
    for row in expected.iter_rows(named=True):
        reference = np.array([row[f"agg_{name}"] for name in names])
        np.testing.assert_allclose(found[row["user_key"]], reference, rtol=1e-12, atol=1e-12)
    # the awkward cases are really there
    assert (expected["agg_recency_h/refund"] == -1.0).any()  # a user without a target event
    assert (expected["agg_count_all"] == np.log1p(1)).any()  # a single event before the cutoff
    assert (expected["agg_tenure_h"] > np.log1p(365 * 24)).any()  # older than every window


def test_standardising_matches_training() -> None:
    raw = torch.tensor([1.0, 100.0, -3.0], dtype=torch.float64)
    mean = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    std = torch.tensor([0.25, 2.0, 1.0], dtype=torch.float64)
    found = standardise_aggregates(raw, mean, std)
    assert found.dtype == torch.float32
    assert found.tolist() == [2.0, 5.0, -3.0]  # clipped at ±5 like the numeric attributes
