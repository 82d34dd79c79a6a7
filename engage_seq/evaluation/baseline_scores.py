"""Fit a classical baseline on a run's samples and score it with the neural models' metric code.

One function for every place a baseline gets a number (a ``model=gbm`` run, the reference rows
of a run report), so a baseline row and a model row are always comparable: same samples, same
splits, same `engage_seq.metrics.scores.score_probabilities`. With a refit (``training.refit``),
the same two fits as a sequence model: validation scored by the fit on the training cutoffs
(held out), test by the refit on train + validation (`engage_seq.baselines.refit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import torch

from engage_seq.baselines.refit import carry_selection, train_and_val
from engage_seq.data.encoding import Vocabulary
from engage_seq.data.tasks import Task, horizon_part, next_event_part
from engage_seq.metrics.scores import score_probabilities
from engage_seq.training.batches import label_expr


def fit_baseline(
    baseline: Any, task: Task, train: pl.DataFrame, val: Any, vocabulary: Vocabulary
) -> None:
    """Fit ``baseline`` on ``train`` (``val``, or None, for early stopping where it has it)."""
    horizon, next_event = horizon_part(task), next_event_part(task)
    if baseline.task_type == "horizon":
        if horizon is None:
            raise ValueError(
                f"{type(baseline).__name__} predicts horizon targets; task {task.name!r} has "
                "none (use model=markov or model=most_frequent)"
            )
        extra = {"horizon_seconds": horizon.horizon_seconds}  # BG/NBD scores (T, T + h]
        kwargs = extra if getattr(baseline, "needs_horizon", False) else {}
        baseline.fit(train, val, horizon.label_columns, **kwargs)
    else:
        if next_event is None:
            raise ValueError(
                f"{type(baseline).__name__} predicts the next event; task {task.name!r} has "
                "no next-event part (use model=rfm_logreg or model=gbm)"
            )
        event_types = vocabulary.tokens["event_type"]
        baseline.fit(train, val, ("label_next_event",), event_types=event_types)


def score_baseline(
    baseline: Any, task: Task, frame: pl.DataFrame, vocabulary: Vocabulary
) -> dict[str, float]:
    """A fitted baseline's metrics on ``frame`` (unprefixed), scored like the neural models."""
    horizon = horizon_part(task)
    probs = torch.from_numpy(np.asarray(baseline.predict_proba(frame), dtype=np.float64))
    if baseline.task_type == "horizon":
        assert horizon is not None
        labels = torch.from_numpy(
            frame.select(pl.col(c).cast(pl.Float64) for c in horizon.label_columns).to_numpy(
                writable=True  # torch warns on a read-only view
            )
        )
        return score_probabilities(list(task.targets), probs, labels)
    classes = torch.from_numpy(
        frame.select(label_expr("label_next_event", vocabulary)).to_series().to_numpy(writable=True)
    ).long()
    keep = classes >= 0
    return score_probabilities([], next_probs=probs[keep], next_classes=classes[keep])


def fit_and_score_baseline(
    baseline: Any,
    task: Task,
    splits: dict[str, pl.DataFrame],
    vocabulary: Vocabulary,
    refit: Any | None = None,
) -> dict[str, float]:
    """Fit a baseline on ``splits["train"]`` (validation for early stopping where it has it)
    and return ``split/metric`` for val and test, scored like the neural models.

    With ``refit`` (a fresh, unfitted baseline of the same settings): ``refit`` is then fitted
    on train + validation, keeping what validation chose for ``baseline``, and scores test;
    val stays ``baseline``'s (held out)."""
    fit_baseline(baseline, task, splits["train"], splits["val"], vocabulary)
    final = baseline
    if refit is not None:
        carry_selection(refit, baseline)
        joined = train_and_val(splits["train"], splits["val"])
        fit_baseline(refit, task, joined, None, vocabulary)
        final = refit
    metrics: dict[str, float] = {}
    for split, model in (("val", baseline), ("test", final)):
        values = score_baseline(model, task, splits[split], vocabulary)
        metrics.update({f"{split}/{k}": v for k, v in values.items()})
    return metrics
