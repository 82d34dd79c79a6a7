"""Practitioners' baselines, fitted on the very same samples as the sequence models.

A sequence model is only worth its cost if it beats what a practitioner would build first, so
every baseline here reads the samples frame of `engage_seq.data.sequences.build_samples` (same
users, cutoffs, splits and labels) and nothing else:

* `RFMLogisticRegression` - hand-made recency / frequency / monetary aggregates
  (`AggregateFeatures`) and an L2 logistic regression: the classic propensity model, and the
  floor a sequence model must clear.
* `GradientBoostedTrees` - the same aggregates with LightGBM: the strongest usual tabular
  baseline; if it matches the sequence model, order and timing add little beyond counts.
* `BGNBD` - the buy-till-you-die model of customer-lifetime-value practice (BG/NBD) on
  each user's frequency, recency and age: what a CLV practitioner would run on a purchase log.
* `MostFrequentNextEvent` - the training label distribution: the floor for the next-event task
  (its log-loss is the entropy of the labels).
* `MarkovNextEvent` - P(next | last event): how much of the next event the last one explains.

Each has ``fit(train, val, label_columns, ...)``, ``predict_proba(samples)`` and a
JSON-serialisable ``to_dict()`` / ``from_dict()`` (no pickle, so saved baselines are safe to
load). `BASELINES` (`registry`) maps the Hydra model names to the classes.

One module per model (`rfm_logreg`, `gbm`, `bgnbd`, `next_event`) over shared `features`,
`logistic`, `horizon` and `frames`. This subpackage reads Polars frames and fits in numpy; it
may import only `engage_seq.common` and `engage_seq.data`, never torch, Lightning or Hydra, and
LightGBM and SciPy only lazily (`gbm.import_lightgbm`, `bgnbd.import_scipy`), so importing it is
cheap and works without the ``gbm`` and ``btyd`` extras.
"""

from __future__ import annotations

from engage_seq.baselines.bgnbd import BGNBD
from engage_seq.baselines.features import NEVER_LOG_HOURS, AggregateFeatures
from engage_seq.baselines.gbm import GradientBoostedTrees
from engage_seq.baselines.logistic import fit_logistic
from engage_seq.baselines.next_event import UNKNOWN_CLASS, MarkovNextEvent, MostFrequentNextEvent
from engage_seq.baselines.registry import BASELINES, Baseline, is_baseline_target
from engage_seq.baselines.rfm_logreg import RFMLogisticRegression
from engage_seq.common.moved import package_getattr

__all__ = [
    "BASELINES",
    "BGNBD",
    "NEVER_LOG_HOURS",
    "UNKNOWN_CLASS",
    "AggregateFeatures",
    "Baseline",
    "GradientBoostedTrees",
    "MarkovNextEvent",
    "MostFrequentNextEvent",
    "RFMLogisticRegression",
    "fit_logistic",
    "is_baseline_target",
]

__getattr__ = package_getattr(__name__)  # 0.1 class paths: engage_seq.common.moved
