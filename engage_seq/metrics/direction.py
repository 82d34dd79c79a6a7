"""Which way is better, for every metric the package reports: the one place that decides it.

Checkpointing, early stopping, Optuna sweeps and the sweep leaderboard all need to know
whether a higher or a lower value wins; each used to carry its own rule. Standard library
only, so light tools (the leaderboard) can ask without loading torch.
"""

from __future__ import annotations

# metric name (without its split prefix) -> "max" or "min"
METRIC_MODES: dict[str, str] = {
    "auroc": "max",
    "auprc": "max",
    "logloss": "min",
    "brier": "min",
    "ece": "min",
    "lift_top10": "max",
    "accuracy": "max",
    "top3_accuracy": "max",
    "macro_f1": "max",
    "nll": "min",
    "time_nll": "min",
}


def metric_mode(name: str) -> str:
    """'val/auroc' -> 'max'; raises for names that are not selectable metrics.

    Only validation metrics select models (checkpoints, early stopping, sweeps): choosing on
    test would report a number that was also used to choose.
    """
    split, _, metric = name.partition("/")
    if split != "val" or metric.split("/")[0] not in METRIC_MODES:
        choices = ", ".join(f"val/{m}" for m in METRIC_MODES)
        raise ValueError(f"cannot select models by {name!r}; use one of: {choices}")
    return METRIC_MODES[metric.split("/")[0]]


def metric_direction(metric: str) -> str:
    """'val/auroc' -> 'max', 'test/logloss' -> 'min', 'train/fit_seconds' -> 'min'.

    Any split, and timings (less is better); for ranking rows that were already chosen.
    """
    parts = metric.split("/")
    if len(parts) >= 2 and parts[1] in METRIC_MODES:
        return METRIC_MODES[parts[1]]
    if parts[-1].endswith("seconds"):
        return "min"
    raise ValueError(
        f"do not know whether higher or lower {metric!r} is better; pass --mode max or --mode min"
    )
