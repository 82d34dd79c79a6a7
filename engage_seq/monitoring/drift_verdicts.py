"""Each feature's distance and verdict against its threshold, and the report of all features.

Thresholds: PSI below 0.1 is conventionally "no change", 0.1-0.25 "watch", above 0.25 "act".
The default drift threshold is that 0.25, not 0.1, because PSI has a noise floor (see
`FeatureDrift.noise` and the `engage_seq.monitoring.drift` docstring). A feature with values on
one side only has no PSI: its verdict is `ONE_SIDED`, which counts as drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from engage_seq.monitoring.distances import js_distance, psi, shares
from engage_seq.monitoring.histograms import MAX_CATEGORIES

DEFAULT_THRESHOLD = 0.25  # PSI at or above which a feature has drifted (exit status 1)
WATCH_THRESHOLD = 0.1  # PSI above which the verdict is "watch" (no exit status)
ONE_SIDED = "missing on one side"  # verdict of a feature with values on one side only
DRIFT_VERDICTS = ("drift", ONE_SIDED)  # the verdicts that set exit status 1


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's histograms on the reference's bins, and how far apart they are.

    With values on one side only, PSI and JS are NaN: against an empty histogram (uniform
    shares, or all zeros) they would read as a number, even as "ok", where nothing was
    compared.
    """

    name: str
    kind: str  # "categorical" or "binned"
    bins: list[str]
    reference: list[int]  # counts per bin
    current: list[int]
    threshold: float
    watch: float
    pooled: int = 0  # categories counted in the OTHER bin
    psi: float = field(init=False)
    js_distance: float = field(init=False)

    def __post_init__(self) -> None:
        ref, cur = np.array(self.reference), np.array(self.current)
        one_sided = self.missing_in is not None
        object.__setattr__(self, "psi", math.nan if one_sided else psi(ref, cur))
        object.__setattr__(self, "js_distance", math.nan if one_sided else js_distance(ref, cur))

    @property
    def missing_in(self) -> str | None:
        """The side ("reference" or "current") with no value of the feature at all while the
        other has some; None otherwise."""
        n_ref, n_cur = sum(self.reference), sum(self.current)
        if (n_ref == 0) == (n_cur == 0):
            return None
        return "reference" if n_ref == 0 else "current"

    @property
    def noise(self) -> float:
        """The PSI expected between two samples of one population of these sizes (chi-square
        approximation for independent rows)."""
        n_ref, n_cur = sum(self.reference), sum(self.current)
        if n_ref == 0 or n_cur == 0:
            return math.nan
        return (len(self.bins) - 1) * (1.0 / n_ref + 1.0 / n_cur)

    @property
    def verdict(self) -> str:
        if self.missing_in is not None:
            return ONE_SIDED
        if self.psi >= self.threshold:
            return "drift"
        return "watch" if self.psi >= self.watch else "ok"

    def to_dict(self) -> dict[str, Any]:
        ref, cur = shares(np.array(self.reference)), shares(np.array(self.current))
        return {
            "name": self.name,
            "kind": self.kind,
            "psi": _finite_or_none(self.psi),
            "js_distance": _finite_or_none(self.js_distance),
            "threshold": self.threshold,
            "verdict": self.verdict,
            "missing_in": self.missing_in,
            "noise": _finite_or_none(self.noise),
            "pooled_categories": self.pooled,
            "n_reference": int(sum(self.reference)),
            "n_current": int(sum(self.current)),
            "bins": self.bins,
            "reference_counts": self.reference,
            "current_counts": self.current,
            "reference_shares": ref.tolist(),
            "current_shares": cur.tolist(),
        }


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def severity_order(features: list[FeatureDrift]) -> list[FeatureDrift]:
    """Features one-sided first, then by decreasing PSI: the order every output lists them."""

    def key(feature: FeatureDrift) -> tuple[int, float]:
        return (0, 0.0) if feature.missing_in is not None else (1, -feature.psi)

    return sorted(features, key=key)


@dataclass
class DriftReport:
    """Every feature compared (in the order they were computed) and what was read on each
    side; `drifted` decides the exit status."""

    features: list[FeatureDrift]
    inputs: dict[str, Any]
    max_categories: int = MAX_CATEGORIES  # categories listed per categorical feature

    @property
    def drifted(self) -> list[FeatureDrift]:
        """Features at or above their threshold, and those with values on one side only."""
        return [f for f in self.features if f.verdict in DRIFT_VERDICTS]

    def table(self) -> pl.DataFrame:
        """drift.csv: one row per feature, without its histograms."""
        return pl.DataFrame(
            {
                "feature": [f.name for f in self.features],
                "kind": [f.kind for f in self.features],
                "psi": [f.psi for f in self.features],
                "js_distance": [f.js_distance for f in self.features],
                "threshold": [f.threshold for f in self.features],
                "verdict": [f.verdict for f in self.features],
                "noise": [f.noise for f in self.features],
                "n_reference": [sum(f.reference) for f in self.features],
                "n_current": [sum(f.current) for f in self.features],
                "missing_in": [f.missing_in for f in self.features],
            },
            schema_overrides={"missing_in": pl.String},
        )

    def to_dict(self) -> dict[str, Any]:
        """drift.json: the verdict, every feature with its histograms, and the inputs."""
        return {
            "drift": bool(self.drifted),
            "drifted_features": [f.name for f in self.drifted],
            "watch_threshold": self.features[0].watch if self.features else WATCH_THRESHOLD,
            "max_categories": self.max_categories,
            "features": [f.to_dict() for f in self.features],
            "inputs": self.inputs,
        }
