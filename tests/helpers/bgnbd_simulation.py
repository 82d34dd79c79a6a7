"""Users simulated by the BG/NBD model itself: the test data for recovering its parameters
(`engage_seq.baselines.bgnbd`, `engage_seq.models.btyd_features`)."""

from __future__ import annotations

import numpy as np
import polars as pl

D = 86_400
CUTOFF = 400 * D
TRUE = {"r": 0.5, "alpha": 8.0, "a": 0.8, "b": 2.5}


def simulate(n: int, seed: int, params: dict[str, float], horizon: float = 0.0):
    """BG/NBD users born at uniform ages 60-360 days before `CUTOFF`; each buys at rate
    lambda while alive and drops out after each purchase with probability p. Returns the
    samples frame (birth = first purchase) and whether each bought in [cutoff, cutoff+horizon).
    Vectorised over users: one loop step per purchase."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    age = rng.uniform(60, 360, n)
    t = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    times: list[list[float]] = [[0.0] for _ in range(n)]
    bought_later = np.zeros(n, dtype=bool)
    while alive.any():
        t = t + rng.exponential(1.0, n) / lam
        alive &= t < age + horizon
        later = alive & (t >= age)
        bought_later |= later
        for i in np.flatnonzero(alive & ~later):  # record purchases before the cutoff only
            times[i].append(t[i])
        alive &= rng.random(n) >= p  # dropout right after each purchase
    ts = [[int(CUTOFF - (a - s) * D) for s in row] for a, row in zip(age, times, strict=True)]
    frame = pl.DataFrame(
        {
            "split": "train",
            "cutoff": CUTOFF,
            "user_key": np.arange(n),
            "event_type": [["purchase"] * len(row) for row in ts],
            "ts": ts,
            "label_purchase": bought_later,
        },
        schema_overrides={"cutoff": pl.Int64, "ts": pl.List(pl.Int64)},
    )
    return frame, bought_later
