"""Metrics: the numbers every model, baseline and oracle is judged by, computed by one code
path (`scores`: streaming torchmetrics states for ROC-AUC, PR-AUC, log-loss, Brier,
calibration error, lift, next-event accuracy and NLL) and which way each is better
(`direction`). torch and torchmetrics only, no Polars, Lightning or Hydra, so evaluation,
training and the sweep leaderboard all score the same way; it imports only `common`.
"""

from __future__ import annotations

from engage_seq.common.moved import package_getattr

__getattr__ = package_getattr(__name__)  # 0.1 class paths: engage_seq.common.moved
