"""The Hydra model names of the baselines, and how a config names one."""

from __future__ import annotations

from engage_seq.baselines.bgnbd import BGNBD
from engage_seq.baselines.gbm import GradientBoostedTrees
from engage_seq.baselines.next_event import MarkovNextEvent, MostFrequentNextEvent
from engage_seq.baselines.rfm_logreg import RFMLogisticRegression

Baseline = (
    RFMLogisticRegression | GradientBoostedTrees | BGNBD | MostFrequentNextEvent | MarkovNextEvent
)
BASELINES: dict[str, type[Baseline]] = {
    "rfm_logreg": RFMLogisticRegression,
    "gbm": GradientBoostedTrees,
    "bgnbd": BGNBD,
    "markov": MarkovNextEvent,
    "most_frequent": MostFrequentNextEvent,
}


def is_baseline_target(target: str) -> bool:
    """Whether a config's ``model._target_`` names a baseline (``engage_seq.baselines.X``, or a
    module below it as older run folders' configs wrote it)."""
    return str(target).startswith("engage_seq.baselines.")
