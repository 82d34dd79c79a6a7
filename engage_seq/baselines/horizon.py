"""Shared plumbing of the horizon (propensity) baselines: aggregates in, one column per target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import polars as pl

from engage_seq.baselines.features import AggregateFeatures
from engage_seq.baselines.frames import Frame, as_lazy


def binary_labels(frame: Frame, split: str, columns: Sequence[str]) -> np.ndarray:
    """(N, L) float64 0/1 labels; each column needs both classes (else no model is defined)."""
    lazy = as_lazy(frame)
    absent = [c for c in columns if c not in lazy.collect_schema().names()]
    if absent:
        raise ValueError(f"the {split} samples have no label columns {absent}")
    labels = lazy.select(pl.col(c).cast(pl.Float64) for c in columns).collect()
    for c in columns:
        nulls, positives = labels[c].null_count(), labels[c].sum()
        if nulls:
            raise ValueError(f"label column {c!r} has {nulls} null values in the {split} split")
        if positives == 0 or positives == labels.height:
            kind = "no positive" if positives == 0 else "only positive"
            raise ValueError(
                f"label column {c!r} has {kind} samples in the {split} split "
                f"({labels.height} samples): a classifier cannot be fitted or early-stopped; "
                "use a longer horizon, more cutoffs or another target"
            )
    return labels.to_numpy().reshape(labels.height, len(columns))


class HorizonBaseline:
    """Shared plumbing of the propensity baselines: aggregates in, one column per target."""

    task_type: ClassVar[str] = "horizon"
    name: ClassVar[str]
    features: AggregateFeatures
    label_columns: list[str]

    def _features(self, train: Frame, label_columns: Sequence[str]) -> np.ndarray:
        if isinstance(label_columns, str) or not label_columns:
            raise ValueError(f"label_columns must be a non-empty list, got {label_columns!r}")
        self.label_columns = list(label_columns)
        self.features = AggregateFeatures().fit(train)
        return self.features.transform(train)
