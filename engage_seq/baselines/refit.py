"""A baseline refitted on train + validation (``training.refit``), so that the reference rows
of a refit run are fitted on the same data as its model and comparisons stay fair.

As for the sequence models, what validation chose in the first fit is kept, not chosen again
on data that is now training data: LightGBM's number of trees per target (`carry_selection`).
The other baselines choose nothing on validation (RFM-LR only scores it; BG/NBD, Markov and
most-frequent ignore it), so their refit is a plain fit on the joined frame. BG/NBD fits the
last cutoff's histories, which after joining are the validation cutoff's: the newest window.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from engage_seq.baselines.frames import Frame


def train_and_val(train: Frame, val: Frame) -> Frame:
    """The training samples, then the validation samples (same columns: one sample build)."""
    if isinstance(train, pl.LazyFrame) or isinstance(val, pl.LazyFrame):
        return pl.concat([train.lazy(), val.lazy()], how="vertical")
    return pl.concat([train, val], how="vertical")


def carry_selection(fresh: Any, fitted: Any) -> None:
    """Give ``fresh`` (unfitted, same settings) what validation chose for ``fitted``: the
    boosting rounds of a GBM (`GradientBoostedTrees.fixed_rounds`). A no-op for baselines
    that choose nothing on validation."""
    rounds = getattr(fitted, "best_iterations", None)
    if isinstance(rounds, dict) and hasattr(fresh, "fixed_rounds"):
        fresh.fixed_rounds = {str(k): int(v) for k, v in rounds.items()}
