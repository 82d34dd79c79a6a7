"""The run's own model on val and test: its samples as `EvaluatedSplit`s, and its predictions
and metrics, recomputed on CPU in fp32 through the code that scored it in training.

A sequence model is fed the evaluation batches training used (length-sorted,
``eval_batch_size``) and updates the same torchmetrics states, so its figures equal
``metrics.json`` (ties in lift@10% are broken by that batch order too); a baseline run scores
the baseline it saved (``baseline.json``), not a fit made here. A ``training.refit`` run is
scored as it was in training: validation by the model chosen on it, test by the refit. A run
with a post-hoc calibration (``calibration.json``) is scored through it, as exported, and raw
(`engage_seq.evaluation.calibrated`). A gap to ``metrics.json`` becomes a note the report shows.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from omegaconf import DictConfig

from engage_seq.baselines.registry import BASELINES
from engage_seq.common.final_model import BASELINE_FILE, final_baseline_file, selected_checkpoint
from engage_seq.data.aggregates import (
    aggregate_scaling_from_metadata,
)
from engage_seq.data.cache import PreparedSamples
from engage_seq.data.encoding import (
    EncodedSamples,
    Vocabulary,
    encode_samples,
    label_expr,
    numeric_scaling_from_metadata,
)
from engage_seq.data.sequences import Task
from engage_seq.data.tasks import horizon_part, next_event_part
from engage_seq.evaluation.base_rates import BaseRateShift, base_rate_shifts
from engage_seq.evaluation.calibrated import run_calibration, score_calibrated
from engage_seq.evaluation.results import EvaluatedSplit, Scorer, prefixed
from engage_seq.evaluation.run_folder import EvaluationError, baseline_name, model_label
from engage_seq.metrics.scores import HorizonMetrics, NextEventMetrics, score_probabilities
from engage_seq.models.engagement import EngagementModel
from engage_seq.serving.export import ExportError, find_checkpoint, load_model
from engage_seq.training.batches import LengthBucketBatchSampler

RECORDED_TOLERANCE = 1e-4  # CPU fp32 here vs the training device (TF32 on a GPU): ~1e-5


def evaluated_split(
    name: str, frame: pl.DataFrame, task: Task, vocabulary: Vocabulary
) -> EvaluatedSplit:
    """``frame``'s labels as arrays: horizon labels (N, L) and next-event classes (N,)."""
    horizon, next_event = horizon_part(task), next_event_part(task)
    columns = horizon.label_columns if horizon is not None else ()
    labels = frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()
    if next_event is not None:
        classes = frame.select(label_expr("label_next_event", vocabulary)).to_series()
        next_classes = classes.cast(pl.Int64).to_numpy()
    else:
        next_classes = np.full(frame.height, -1, dtype=np.int64)
    cutoffs = tuple(sorted(frame["cutoff"].unique().to_list()))
    return EvaluatedSplit(
        name, frame, labels.reshape(frame.height, len(columns)), next_classes, cutoffs
    )


def split_base_rates(
    task: Task,
    prepared: PreparedSamples,
    splits: dict[str, EvaluatedSplit],
    vocabulary: Vocabulary,
) -> list[BaseRateShift]:
    """Each horizon target's positive rate in train, val and test, flagged where train and
    val differ (`engage_seq.evaluation.base_rates`)."""
    train = evaluated_split("train", prepared.split("train"), task, vocabulary)
    targets = tuple(horizon_part(task).targets) if horizon_part(task) is not None else ()
    labels = [s.horizon_labels for s in (train, splits["val"], splits["test"])]
    return base_rate_shifts(targets, *labels)


def evaluation_batches(encoded: EncodedSamples, batch_size: int) -> list[np.ndarray]:
    """Row indices of the batches training evaluated this split in (single process)."""
    return list(LengthBucketBatchSampler(encoded.lengths, batch_size, shuffle=False))


def score_model(
    model: EngagementModel, encoded: EncodedSamples, batch_size: int, targets: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """-> horizon probabilities (N, L), next-event probabilities (N, C), metrics (unprefixed).

    CPU, fp32, `torch.inference_mode`, whole batches; the metric states are updated batch by
    batch as `EngagementLitModule` does, and combined in its order (next event, then horizon).
    """
    model = model.cpu().float().eval()
    n = len(encoded)
    n_targets, n_classes = model.n_outputs, model.n_next_classes
    horizon_probs = np.zeros((n, n_targets))
    next_probs = np.zeros((n, n_classes))
    horizon_metric = HorizonMetrics(targets) if n_targets else None
    next_metric = NextEventMetrics(n_classes, model.n_time_outputs > 0) if n_classes else None
    with torch.inference_mode():
        for rows in evaluation_batches(encoded, batch_size):
            batch = encoded.batch(rows)
            raw = model(*batch[:-1]).float()
            labels = batch[-1].float()
            horizon_logits, next_logits, time_params = model.split_outputs(raw)
            probs = model.probabilities(raw).double().numpy()
            horizon_probs[rows] = probs[:, :n_targets]
            next_probs[rows] = probs[:, n_targets:]
            if horizon_metric is not None:
                horizon_metric.update(horizon_logits, labels[:, :n_targets])
            if next_metric is not None:
                classes = labels[:, n_targets].long()
                hours = labels[:, n_targets + 1]
                has = classes >= 0
                next_metric.update(next_logits[has], classes[has], time_params[has], hours[has])
    values: dict[str, float] = {}
    if next_metric is not None:
        values.update(next_metric.compute())
    if horizon_metric is not None:
        values.update(horizon_metric.compute())
    return horizon_probs, next_probs, values


def score_predictions(
    targets: list[str],
    split: EvaluatedSplit,
    horizon_probs: np.ndarray | None,
    next_probs: np.ndarray | None,
) -> dict[str, float]:
    """Metrics of ready-made probabilities, scored as `fit_and_score_baseline` scores them."""
    values: dict[str, float] = {}
    if next_probs is not None and next_probs.size:
        keep = split.next_classes >= 0
        values.update(
            score_probabilities(
                [],
                next_probs=torch.tensor(next_probs[keep]),
                next_classes=torch.tensor(split.next_classes[keep]),
            )
        )
    if horizon_probs is not None and horizon_probs.size:
        values.update(
            score_probabilities(
                targets, torch.tensor(horizon_probs), torch.tensor(split.horizon_labels)
            )
        )
    return values


def sequence_model_scorer(
    run_dir: Path,
    cfg: DictConfig,
    task: Task,
    prepared: PreparedSamples,
    splits: dict[str, EvaluatedSplit],
    batch_size: int,
    notes: list[str],
) -> tuple[Scorer, EngagementModel, Vocabulary, str]:
    """-> the model's scorer, the model, its vocabulary and the samples it was trained on.

    The final model (`find_checkpoint`) scores test; validation is scored by the checkpoint
    chosen on it, which for a ``training.refit`` run is not the final model (the refit was
    trained on validation), so that ``val/*`` stay held out and equal ``metrics.json``."""
    try:
        final = find_checkpoint(run_dir)
        model, meta = load_model(final)
        selected = selected_checkpoint(run_dir)
        held_out = load_model(selected)[0] if final != selected else model
    except ExportError as error:
        raise EvaluationError(str(error)) from error
    trained_on = str(meta.get("data_fingerprint") or prepared.cache_dir.name)
    if trained_on != prepared.cache_dir.name:
        notes.append(
            f"The samples were rebuilt ({prepared.cache_dir.name}) and differ from the ones the "
            f"model was trained and scored on ({trained_on}): code or data changed since "
            "training, so these figures need not equal metrics.json."
        )
    vocabulary = Vocabulary.from_metadata(meta)  # the model's, not re-fitted
    targets = list(meta["target_names"])
    calibration = run_calibration(run_dir, targets)
    scorer = Scorer(
        name=str(cfg.model.get("encoder", "model")),
        label=model_label(cfg.model),
        kind="model",
        targets=tuple(targets),
        calibration=calibration,
    )
    started = time.perf_counter()
    for name, split in splits.items():
        split.encoded = encode_samples(
            split.frame,
            vocabulary,
            int(meta["max_len"]),
            task.label_columns,
            numeric_scaling_from_metadata(meta),
            aggregate_scaling_from_metadata(meta),
        )
        scored = held_out if name == "val" else model
        if calibration is not None:  # what the artifact returns; the raw model alongside
            scores = score_calibrated(scored, split.encoded, batch_size, targets, calibration)
            horizon, next_event, values = scores.horizon, scores.next_event, scores.metrics
            scorer.uncalibrated[name] = scores.uncalibrated_horizon
            scorer.metrics.update(prefixed(f"{name}_uncalibrated", scores.uncalibrated_metrics))
        else:
            horizon, next_event, values = score_model(scored, split.encoded, batch_size, targets)
        scorer.horizon[name], scorer.next_event[name] = horizon, next_event
        scorer.metrics.update(prefixed(name, values))
    scorer.seconds = time.perf_counter() - started
    return scorer, model, vocabulary, trained_on


def _saved_baseline(name: str, path: Path) -> Any:
    if not path.is_file():
        raise EvaluationError(
            f"{path.parent} is a baseline run without {path.name}: train it again"
        )
    return BASELINES[name].from_dict(json.loads(path.read_text()))


def baseline_run_scorer(
    run_dir: Path, cfg: DictConfig, splits: dict[str, EvaluatedSplit], targets: list[str]
) -> Scorer:
    """A baseline run's own fitted baseline (baseline.json), not a fit made here; with
    ``training.refit`` its refit (baseline_refit.json) scores test, baseline.json val."""
    name = baseline_name(str(cfg.model._target_))
    started = time.perf_counter()
    held_out = _saved_baseline(name, run_dir / BASELINE_FILE)
    final_path = final_baseline_file(run_dir)
    final = held_out if final_path.name == BASELINE_FILE else _saved_baseline(name, final_path)
    scorer = Scorer(name, model_label(cfg.model), "model", tuple(targets))
    for split_name, split in splits.items():
        baseline = final if split_name == "test" else held_out
        probs = np.asarray(baseline.predict_proba(split.frame), dtype=np.float64)
        if baseline.task_type == "horizon":
            scorer.horizon[split_name] = probs
            values = score_predictions(targets, split, probs, None)
        else:
            scorer.next_event[split_name] = probs
            values = score_predictions([], split, None, probs)
        scorer.metrics.update(prefixed(split_name, values))
    scorer.seconds = time.perf_counter() - started
    return scorer


def recorded_mismatch(computed: Mapping[str, float], recorded: Mapping[str, float]) -> list[str]:
    """A note when the recomputed metrics of the run's model differ from its metrics.json."""
    gaps = {
        key: abs(computed[key] - recorded[key])
        for key in computed.keys() & recorded.keys()
        if math.isfinite(computed[key]) and math.isfinite(recorded[key])
    }
    worst = max(gaps, key=gaps.__getitem__, default=None)
    if worst is None or gaps[worst] <= RECORDED_TOLERANCE:
        return []
    return [
        f"Recomputed metrics differ from metrics.json by up to {gaps[worst]:.2g} ({worst}: "
        f"{computed[worst]:.4f} here, {recorded[worst]:.4f} recorded); this report shows the "
        "recomputed values."
    ]
