"""What evaluating a run produces: the samples of each evaluated split (`EvaluatedSplit`), one
scorer's predictions and metrics (`Scorer`), the other runs of its sweep (`SiblingRun`), and
the whole `RunEvaluation` that `engage_seq.reporting` lays out. Plain data and two helpers on
metric keys; the model class is named for type checking only, so importing these types does
not load torch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from omegaconf import DictConfig

from engage_seq.data.encoding import EncodedSamples, Vocabulary
from engage_seq.data.sequences import Task
from engage_seq.evaluation.base_rates import BaseRateShift

if TYPE_CHECKING:
    from engage_seq.models.calibration import Calibration
    from engage_seq.models.engagement import EngagementModel


@dataclass
class EvaluatedSplit:
    """One split's samples and labels; every scorer's arrays follow ``frame``'s row order."""

    name: str
    frame: pl.DataFrame
    horizon_labels: np.ndarray  # (N, L) float64 0/1, L = horizon targets (may be 0)
    next_classes: np.ndarray  # (N,) int64 next-event class, -1 = none (masked)
    cutoffs: tuple[int, ...]  # epoch seconds UTC
    encoded: EncodedSamples | None = None  # model input (sequence-model runs only)

    def __len__(self) -> int:
        return self.frame.height


@dataclass
class Scorer:
    """One row of the comparison: the run's model, a baseline or the oracle."""

    name: str  # short id: "lstm", "gbm", "oracle"
    label: str  # what a reader sees
    kind: str  # "model" | "baseline" | "oracle"
    targets: tuple[str, ...]  # horizon targets it predicts (the oracle: purchase only)
    horizon: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, len(targets))
    next_event: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, C)
    metrics: dict[str, float] = field(default_factory=dict)  # "split/name", as metrics.json
    seconds: float = 0.0
    # with a post-hoc calibration (the run's calibration.json): ``horizon`` holds the
    # calibrated probabilities, this the raw ones, split -> (N, len(targets))
    uncalibrated: dict[str, np.ndarray] = field(default_factory=dict)
    calibration: Calibration | None = None


@dataclass(frozen=True)
class SiblingRun:
    """Another run of the same multirun on the same samples (metrics from its metrics.json)."""

    name: str
    label: str
    metrics: dict[str, float]


@dataclass
class RunEvaluation:
    run_dir: Path
    task: Task
    targets: tuple[str, ...]  # horizon targets, () for next_event tasks
    next_event_classes: list[str]  # () without a next-event part
    horizon_seconds: int | None
    vocabulary: Vocabulary
    splits: dict[str, EvaluatedSplit]
    scorers: list[Scorer]  # [0]: the run's own model
    siblings: list[SiblingRun]
    skipped: dict[str, str]  # reference -> why it is not in the report
    notes: list[str]  # caveats a reader must see (fingerprint mismatch, ...)
    recorded: dict[str, float]  # the run's metrics.json ({} if absent)
    model: EngagementModel | None  # None for baseline runs
    data_fingerprint: str
    data_description: str
    config: DictConfig
    timings: dict[str, float]
    base_rates: list[BaseRateShift] = field(default_factory=list)  # per target, with flags

    @property
    def run(self) -> Scorer:
        return self.scorers[0]


def prefixed(split: str, values: Mapping[str, float]) -> dict[str, float]:
    """``{"auroc": x}`` -> ``{"test/auroc": x}``: metric keys as metrics.json has them."""
    return {f"{split}/{k}": float(v) for k, v in values.items()}


def metric_key(name: str, target: str, targets: tuple[str, ...] | list[str]) -> str:
    """Where a horizon metric of one target lives: 'auroc' (one target) or 'auroc/<target>'."""
    return name if len(targets) <= 1 else f"{name}/{target}"


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
