"""A backtest's result: one row of metrics per cutoff, read per target or as the macro mean,
next to the training run's own test metrics. Polars only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from engage_seq.monitoring.errors import BacktestError
from engage_seq.reporting.section import json_safe

TABLE_METRICS = ("auroc", "auprc", "logloss", "ece", "lift_top10")
PER_TARGET = (*TABLE_METRICS, "brier", "positive_rate", "mean_prediction")  # metric/<target>


@dataclass
class BacktestResult:
    """One row per cutoff and the run's own test metrics for reference.

    Columns of ``rows``: ``cutoff`` (ISO), ``n_users`` (users scored: one sample each),
    ``n_candidates`` (users with an event before the cutoff) and ``dropped/<rule>`` (those the
    run's eligibility rules removed, by the first rule failed), ``positives/<target>``, then
    the metrics of `engage_seq.metrics.scores` (``auroc``, ``positive_rate``, ``ece``, ...). With
    several targets those are the macro mean over them and ``<metric>/<target>`` holds each
    target's value, the naming of the run's metrics.json; `target_rows` gives one target's.
    """

    rows: pl.DataFrame
    reference: dict[str, float]  # the training run's test/<metric>, without the prefix
    inputs: dict[str, Any]

    @property
    def targets(self) -> list[str]:
        """The artifact's targets, in output order (from the ``positives/<target>`` columns)."""
        columns = self.rows.columns
        return [c.removeprefix("positives/") for c in columns if c.startswith("positives/")]

    def target_rows(self, target: str) -> pl.DataFrame:
        """``cutoff``, ``n_users``, ``positives`` and the metrics of one target under their
        plain names (``auroc``, ...), whatever the number of targets."""
        if target not in self.targets:
            raise BacktestError(f"no target {target!r}; the targets are {self.targets}")
        suffix = "" if len(self.targets) == 1 else f"/{target}"
        columns = [m for m in PER_TARGET if f"{m}{suffix}" in self.rows.columns]
        return self.rows.select(
            "cutoff",
            "n_users",
            pl.col(f"positives/{target}").alias("positives"),
            *(pl.col(f"{m}{suffix}").alias(m) for m in columns),
        )

    def target_reference(self, target: str) -> dict[str, float]:
        """The run's test metrics of one target, under plain names."""
        if len(self.targets) == 1:
            return dict(self.reference)
        suffix = f"/{target}"
        return {k.removesuffix(suffix): v for k, v in self.reference.items() if k.endswith(suffix)}

    def macro_reference(self) -> dict[str, float]:
        """The run's macro means (the unsuffixed test metrics)."""
        return {k: v for k, v in self.reference.items() if "/" not in k}

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": json_safe(self.rows.to_dicts()),
            "training_test_metrics": self.reference,
            "inputs": self.inputs,
        }


def drop_text(counts: dict[str, int]) -> str:
    """Counts keyed ``dropped/<rule>`` as "rule n, ..." (largest first; "none" if all 0)."""
    shown = {k.removeprefix("dropped/"): n for k, n in counts.items() if n}
    return (
        ", ".join(f"{k} {n:,}" for k, n in sorted(shown.items(), key=lambda kv: -kv[1])) or "none"
    )
