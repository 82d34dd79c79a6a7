"""Next-event baselines: `MostFrequentNextEvent` (the training label distribution, whose log-loss
is the labels' entropy) and `MarkovNextEvent` (P(next | last event))."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl

from engage_seq.baselines.frames import FORMAT_VERSION, Frame, as_lazy, check_format

UNKNOWN_CLASS = "<unknown>"


class NextEventBaseline:
    """Shared plumbing of the next-event baselines.

    Classes are fixed by the caller: column 0 is `UNKNOWN_CLASS` (any label or previous event
    not in ``event_types``), column ``1 + i`` is ``event_types[i]``. Samples with a null label
    are skipped in fit (the sample builder drops them anyway); ``val`` is not used.
    """

    task_type: ClassVar[str] = "next_event"
    name: ClassVar[str]
    event_types: list[str]
    label_column: str
    marginal: np.ndarray  # (n_classes,) smoothed training distribution of the label

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0 (additive smoothing), got {alpha}")
        self.alpha = float(alpha)

    @property
    def classes(self) -> list[str]:
        return [UNKNOWN_CLASS, *self.event_types]

    def _fitted_dict(self, **fitted: Any) -> dict[str, Any]:
        """to_dict: the fields every next-event baseline has, plus its own fitted arrays."""
        return {
            "type": self.name,
            "format": FORMAT_VERSION,
            "params": {"alpha": self.alpha},
            "label_column": self.label_column,
            "event_types": self.event_types,
            "marginal": self.marginal.tolist(),
            **fitted,
        }

    @classmethod
    def _restore(cls, d: dict[str, Any]) -> Any:
        """from_dict: the shared fields; the subclass restores its own."""
        check_format(d, cls.name)
        out = cls(**d["params"])
        out.label_column = d["label_column"]
        out.event_types = list(d["event_types"])
        out.marginal = np.asarray(d["marginal"], dtype=np.float64)
        return out

    def _class_id(self, expr: pl.Expr) -> pl.Expr:
        """0 for unknown, 1 + i for event_types[i]; null stays null."""
        ids = {t: i + 1 for i, t in enumerate(self.event_types)}
        mapped = expr.replace_strict(ids, default=0, return_dtype=pl.Int64)
        return pl.when(expr.is_null()).then(None).otherwise(mapped)

    def _setup(
        self, train: Frame, label_columns: Sequence[str], event_types: Sequence[str]
    ) -> pl.LazyFrame:
        if isinstance(event_types, str) or not event_types:
            raise ValueError(f"event_types must be a non-empty list, got {event_types!r}")
        if len(set(event_types)) != len(event_types):
            raise ValueError(f"event_types has duplicates: {list(event_types)}")
        if isinstance(label_columns, str) or not label_columns:
            raise ValueError(f"label_columns must be a non-empty list, got {label_columns!r}")
        self.event_types = [str(t) for t in event_types]
        self.label_column = label_columns[0]
        lazy = as_lazy(train)
        if self.label_column not in lazy.collect_schema().names():
            raise ValueError(f"the train samples have no label column {self.label_column!r}")
        labelled = lazy.filter(pl.col(self.label_column).is_not_null())
        if labelled.select(pl.len()).collect().item() == 0:
            raise ValueError(f"label column {self.label_column!r} has no labels in the train split")
        return labelled

    def _marginal(self, labelled: pl.LazyFrame) -> np.ndarray:
        k = len(self.classes)
        found = (
            labelled.group_by(self._class_id(pl.col(self.label_column)).alias("next"))
            .len()
            .collect()
        )
        counts = np.zeros(k)
        counts[found["next"].to_numpy()] = found["len"].to_numpy()
        return (counts + self.alpha) / (counts.sum() + self.alpha * k)


class MostFrequentNextEvent(NextEventBaseline):
    """The smoothed training distribution of the next event, the same for every sample."""

    name = "most_frequent"

    def fit(
        self,
        train: Frame,
        val: Frame | None = None,
        label_columns: Sequence[str] = ("label_next_event",),
        *,
        event_types: Sequence[str],
    ) -> MostFrequentNextEvent:
        labelled = self._setup(train, label_columns, event_types)
        self.marginal = self._marginal(labelled)
        return self

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, len(event_types) + 1) float64, rows summing to 1."""
        n = as_lazy(samples).select(pl.len()).collect().item()
        return np.tile(self.marginal, (n, 1))

    def to_dict(self) -> dict[str, Any]:
        return self._fitted_dict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MostFrequentNextEvent:
        return cls._restore(d)


class MarkovNextEvent(NextEventBaseline):
    """First-order Markov chain: P(next | last event of the history), additively smoothed.

    ``transitions[i, j] = (n(i -> j) + alpha) / (n(i) + alpha * K)`` over training samples,
    where i is the class of the last event in ``event_type`` and j that of the label. A
    previous class never seen in training (and an empty history) gets the smoothed marginal.
    """

    name = "markov"

    def fit(
        self,
        train: Frame,
        val: Frame | None = None,
        label_columns: Sequence[str] = ("label_next_event",),
        *,
        event_types: Sequence[str],
    ) -> MarkovNextEvent:
        labelled = self._setup(train, label_columns, event_types)
        self.marginal = self._marginal(labelled)
        k = len(self.classes)
        found = (
            labelled.select(
                self._class_id(pl.col("event_type").list.last()).alias("prev"),
                self._class_id(pl.col(self.label_column)).alias("next"),
            )
            .drop_nulls("prev")
            .group_by("prev", "next")
            .len()
            .collect()
        )
        counts = np.zeros((k, k))
        counts[found["prev"].to_numpy(), found["next"].to_numpy()] = found["len"].to_numpy()
        totals = counts.sum(axis=1, keepdims=True)
        smoothed = (counts + self.alpha) / (totals + self.alpha * k)
        self.transitions = np.where(totals > 0, smoothed, self.marginal)
        self.seen_previous = (totals[:, 0] > 0).tolist()
        return self

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, len(event_types) + 1) float64, rows summing to 1."""
        k = len(self.classes)
        prev = (
            as_lazy(samples)
            .select(self._class_id(pl.col("event_type").list.last()).fill_null(k).alias("p"))
            .collect()["p"]
            .to_numpy()
        )
        return np.vstack([self.transitions, self.marginal])[prev]

    def to_dict(self) -> dict[str, Any]:
        return self._fitted_dict(
            transitions=self.transitions.tolist(), seen_previous=self.seen_previous
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MarkovNextEvent:
        out = cls._restore(d)
        out.transitions = np.asarray(d["transitions"], dtype=np.float64)
        out.seen_previous = list(d["seen_previous"])
        return out
