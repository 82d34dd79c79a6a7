"""Fitting post-hoc calibration (`engage_seq.models.calibration`) on the validation split's
predictions of the selected checkpoint, and scoring the model with and without it.

Validation is the newest labelled window, so it is the best estimate of the level the test
window and serving will see; it also chose the epoch, which costs little here: one to a few
parameters per output are fitted, not a model. A refit (``training.refit``) reuses the
calibration fitted before it, unchanged (`fit_calibration` takes plain arrays so that code can
call it). Plain numpy/torch, no Lightning: Newton's method on the log-loss for temperature and
Platt, pool-adjacent-violators for isotonic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engage_seq.common.io import write_json_atomic
from engage_seq.metrics.scores import HorizonMetrics, NextEventMetrics
from engage_seq.models.calibration import (
    CALIBRATION_FILE,
    MAX_KNOTS,
    METHODS,
    PROBABILITY_FLOOR,
    Calibration,
    CalibrationError,
    CalibrationLayer,
    OutputCalibration,
)
from engage_seq.models.engagement import EngagementModel
from engage_seq.training.batches import EncodedSamples, LengthBucketBatchSampler

RIDGE = 1e-6  # pulls the Platt/temperature parameters towards identity: separable data stays finite
SCALE_BOUNDS = (1e-2, 1e2)  # a calibration that needs more is a symptom, not a fix
FITTED_METRICS = ("logloss", "brier", "ece", "auroc", "positive_rate", "mean_prediction")


def check_method(method: Any) -> str:
    """A calibration method name, checked (before any training, for ``calibration.method``)."""
    if method not in METHODS:
        raise CalibrationError(f"calibration.method is {method!r}; use one of {METHODS}")
    return str(method)


def calibration_method(config: Any) -> str:
    """``calibration.method`` of a run configuration (a mapping; ``none`` where the block is
    absent, as in configurations written before it existed)."""
    block = config.get("calibration") or {}
    return check_method(block.get("method", "none"))


def write_calibration(run_dir: Path, calibration: Calibration | None) -> None:
    """``calibration.json`` in the run folder, atomically; without a calibration any older
    file goes, so export and the report never apply a stale one."""
    path = run_dir / CALIBRATION_FILE
    if calibration is None:
        path.unlink(missing_ok=True)
    else:
        write_json_atomic(path, calibration.to_dict())


# --- fitting -------------------------------------------------------------------------------


def _newton_logistic(
    features: np.ndarray, labels: np.ndarray, start: np.ndarray, offset: float | np.ndarray = 0.0
) -> np.ndarray:
    """argmin_w mean log-loss(sigmoid(features @ w + offset), labels) + RIDGE * |w - start|^2,
    by Newton's method with step halving (convex: a handful of iterations)."""
    n = max(1, labels.shape[0])

    def loss(w: np.ndarray) -> float:
        z = features @ w + offset
        return float(np.mean(np.logaddexp(0.0, z) - labels * z) + RIDGE * np.sum((w - start) ** 2))

    w = start.astype(np.float64).copy()
    current = loss(w)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(features @ w + offset)))
        grad = features.T @ (p - labels) / n + 2 * RIDGE * (w - start)
        hess = (features.T * (p * (1 - p))) @ features / n + 2 * RIDGE * np.eye(w.size)
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            candidate = w - step
            value = loss(candidate)
            if value <= current:
                break
            step = step / 2
        else:
            break
        w, improvement, current = candidate, current - value, value
        if improvement < 1e-12:
            break
    return w


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The one scale s of ``sigmoid(s * logit)`` that minimises the log-loss (1 / temperature)."""
    w = _newton_logistic(logits[:, None], labels, np.array([1.0]))
    return float(np.clip(w[0], *SCALE_BOUNDS))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a * logit + b)`` minimising the log-loss; a is kept inside
    `SCALE_BOUNDS` (positive: the ranking never reverses), b refitted when a was clipped, so
    the mean prediction still matches the observed rate."""
    features = np.stack([logits, np.ones_like(logits)], axis=1)
    a, b = _newton_logistic(features, labels, np.array([1.0, 0.0]))
    clipped = float(np.clip(a, *SCALE_BOUNDS))
    if clipped != a:
        ones = np.ones((logits.shape[0], 1))
        b = _newton_logistic(ones, labels, np.array([0.0]), offset=clipped * logits)[0]
    return clipped, float(b)


def fit_isotonic(probs: np.ndarray, labels: np.ndarray) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators on the probabilities -> at most `MAX_KNOTS` knots (x: mean
    probability of a pooled block, y: its positive rate), increasing x, non-decreasing y."""
    values, inverse = np.unique(probs, return_inverse=True)  # tied scores pool at once
    weight = np.bincount(inverse).astype(np.float64)
    positives = np.bincount(inverse, weights=labels.astype(np.float64))
    xsum = values * weight
    blocks: list[list[float]] = []  # [weight, positives, x-sum]
    for w, pos, xs in zip(weight, positives, xsum, strict=True):
        blocks.append([w, pos, xs])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
            w2, p2, x2 = blocks.pop()
            blocks[-1] = [blocks[-1][0] + w2, blocks[-1][1] + p2, blocks[-1][2] + x2]
    block = np.asarray(blocks)
    x = block[:, 2] / block[:, 0]
    y = np.clip(block[:, 1] / block[:, 0], PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    if x.size > MAX_KNOTS:  # keep knots evenly spread over the samples, both ends included
        cumulative = np.cumsum(block[:, 0])
        wanted = np.linspace(cumulative[0], cumulative[-1], MAX_KNOTS)
        keep = np.unique(np.searchsorted(cumulative, wanted))
        x, y = x[keep], y[keep]
    return x.tolist(), y.tolist()


def fit_next_event_scale(logits: np.ndarray, classes: np.ndarray) -> float:
    """The scale s of ``softmax(s * logits)`` minimising the cross-entropy (Newton in s:
    d/ds = E_p[z] - z_class, d2/ds2 = Var_p[z])."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    picked = z.gather(1, torch.as_tensor(classes, dtype=torch.int64)[:, None])[:, 0]
    scale = 1.0
    for _ in range(50):
        p = torch.softmax(scale * z, dim=1)
        mean = (p * z).sum(1)
        grad = float((mean - picked).mean())
        curvature = float(((p * z * z).sum(1) - mean**2).mean())
        if curvature <= 1e-12:
            break
        new = float(np.clip(scale - grad / curvature, *SCALE_BOUNDS))
        if abs(new - scale) < 1e-9:
            break
        scale = new
    return scale


def fit_calibration(
    horizon_logits: np.ndarray,  # (N, L)
    labels: np.ndarray,  # (N, L) 0/1
    method: str,
    names: list[str],
    next_logits: np.ndarray | None = None,  # (M, C): samples with a next event only
    next_classes: np.ndarray | None = None,  # (M,)
) -> Calibration | None:
    """A `Calibration` fitted per horizon output (None for ``none``); the next-event softmax,
    when given, gets a temperature whatever the method. ``fitted_on`` and the before/after
    metrics are filled in by the caller (`calibrate_best`)."""
    if check_method(method) == "none":
        return None
    outputs = []
    for i, name in enumerate(names):
        z = horizon_logits[:, i].astype(np.float64)
        y = labels[:, i].astype(np.float64)
        if method == "temperature":
            outputs.append(OutputCalibration(name, scale=fit_temperature(z, y)))
        elif method == "platt":
            a, b = fit_platt(z, y)
            outputs.append(OutputCalibration(name, scale=a, bias=b))
        else:
            p = torch.sigmoid(torch.as_tensor(z, dtype=torch.float32)).double().numpy()
            x, fitted = fit_isotonic(p, y)
            outputs.append(OutputCalibration(name, knots_x=tuple(x), knots_y=tuple(fitted)))
    next_scale = 1.0
    if next_logits is not None and next_classes is not None and next_classes.size:
        next_scale = fit_next_event_scale(next_logits, next_classes)
    return Calibration(method, tuple(outputs), next_event_scale=next_scale)


# --- scoring a model with and without it ------------------------------------------------------


def raw_outputs(
    model: EngagementModel, encoded: EncodedSamples, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """-> raw outputs (N, n_raw), labels (N, n_labels) and the sample row of each, in the
    length-sorted batch order evaluation uses (so ties in lift@10% break the same way), fp32,
    computed on the model's device."""
    device = next(model.parameters()).device
    outputs, labels, order = [], [], []
    model.eval()
    with torch.inference_mode():
        for rows in LengthBucketBatchSampler(encoded.lengths, batch_size, shuffle=False):
            batch = [t.to(device) for t in encoded.batch(rows)]
            outputs.append(model(*batch[:-1]).float().cpu())
            labels.append(batch[-1].float().cpu())
            order.append(np.asarray(rows))
    return torch.cat(outputs), torch.cat(labels), np.concatenate(order)


def output_metrics(
    model: EngagementModel,
    layer: CalibrationLayer,
    raw: torch.Tensor,  # (N, n_raw)
    labels: torch.Tensor,  # (N, n_labels)
    targets: list[str],
) -> dict[str, float]:
    """Metrics (unprefixed, as `EngagementLitModule` names them) of the probabilities the
    artifact would return: ``layer`` applied to ``raw``. Never synced across DDP ranks: every
    rank scores the whole split here."""
    layer = layer.cpu()
    horizon_logits, next_logits, time_params = model.split_outputs(raw)
    n_targets, n_classes = model.n_outputs, model.n_next_classes
    values: dict[str, float] = {}
    if n_classes:
        classes = labels[:, n_targets].long()
        has = classes >= 0
        metric = NextEventMetrics(n_classes, model.n_time_outputs > 0, sync_on_compute=False)
        scaled = next_logits * layer.next_event_scale
        metric.update(scaled[has], classes[has], time_params[has], labels[has, n_targets + 1])
        values.update(metric.compute())
    if n_targets:
        p = layer.horizon_probabilities(horizon_logits).double().clamp(1e-12, 1 - 1e-12)
        metric = HorizonMetrics(targets, sync_on_compute=False)
        metric.update((p.log() - (-p).log1p()).float(), labels[:, :n_targets])
        values.update(metric.compute())
    return values


def calibrate_best(
    model: EngagementModel,
    encoded: dict[str, EncodedSamples],
    method: str,
    batch_size: int,
    targets: Sequence[str],
    metrics: dict[str, float],
) -> Calibration | None:
    """Fit ``method`` on the validation predictions of ``model`` (the selected checkpoint) and
    rescore val and test through it: ``metrics``' ``val/*`` and ``test/*`` then describe the
    model as exported, the uncalibrated ones move to ``val_uncalibrated/*`` and
    ``test_uncalibrated/*``. ``none``: nothing changes, None is returned."""
    if check_method(method) == "none":
        return None
    targets = list(targets)
    raw, labels, _ = raw_outputs(model, encoded["val"], batch_size)
    horizon, next_logits, _ = model.split_outputs(raw)
    n_targets = model.n_outputs
    next_part: tuple[np.ndarray, np.ndarray] | tuple[None, None] = (None, None)
    if model.n_next_classes:
        classes = labels[:, n_targets].long()
        has = classes >= 0
        next_part = (next_logits[has].double().numpy(), classes[has].numpy())
    fitted = fit_calibration(
        horizon.double().numpy(), labels[:, :n_targets].numpy(), method, targets, *next_part
    )
    assert fitted is not None  # method != none
    _rescore(model, raw, labels, fitted, targets, "val", metrics)
    rescore(model, encoded["test"], fitted, batch_size, targets, "test", metrics)
    return Calibration(
        fitted.method,
        fitted.outputs,
        fitted.next_event_scale,
        fitted_on={"split": "val", "n_samples": int(raw.shape[0])},
        before=_summary(metrics, "val_uncalibrated"),
        after=_summary(metrics, "val"),
    )


def rescore(
    model: EngagementModel,
    encoded: EncodedSamples,
    calibration: Calibration,
    batch_size: int,
    targets: Sequence[str],
    split: str,
    metrics: dict[str, float],
) -> None:
    """Set ``metrics``' ``<split>/*`` (``model`` through ``calibration``) and
    ``<split>_uncalibrated/*`` (without it): how a refitted model is scored with the
    calibration fitted before the refit."""
    raw, labels, _ = raw_outputs(model, encoded, batch_size)
    _rescore(model, raw, labels, calibration, list(targets), split, metrics)


def _rescore(
    model: EngagementModel,
    raw: torch.Tensor,  # (N, n_raw)
    labels: torch.Tensor,  # (N, n_labels)
    calibration: Calibration,
    targets: list[str],
    split: str,
    metrics: dict[str, float],
) -> None:
    identity = CalibrationLayer(None, model.n_outputs)
    layer = CalibrationLayer(calibration, model.n_outputs)
    before = output_metrics(model, identity, raw, labels, targets)
    metrics.update({f"{split}_uncalibrated/{k}": v for k, v in before.items()})
    metrics.update(
        {f"{split}/{k}": v for k, v in output_metrics(model, layer, raw, labels, targets).items()}
    )


def _summary(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """The fitted-on split's headline numbers, for calibration.json and the artifact."""
    keys = [*FITTED_METRICS, "nll"]
    return {
        k: metrics[f"{prefix}/{k}"]
        for k in keys
        if math.isfinite(metrics.get(f"{prefix}/{k}", math.nan))
    }
