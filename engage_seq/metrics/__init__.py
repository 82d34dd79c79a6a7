"""Metrics: the numbers every model, baseline and oracle is judged by, computed by one code
path (`scores`: streaming torchmetrics states for ROC-AUC, PR-AUC, log-loss, Brier,
calibration error, lift, next-event accuracy and NLL) and which way each is better
(`direction`). torch and torchmetrics only, no Polars, Lightning or Hydra, so evaluation,
training and the sweep leaderboard all score the same way; it imports only `common`.
"""

from __future__ import annotations

from typing import Any

from engage_seq.common.moved import legacy_attribute


def __getattr__(name: str) -> Any:
    """A 0.1 class path through this name: resolved from its new home, with a warning."""
    return legacy_attribute(__name__, name)
