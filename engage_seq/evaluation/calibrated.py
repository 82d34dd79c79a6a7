"""The run's model with its post-hoc calibration (``calibration.json``): predictions and
metrics both calibrated (what the artifact returns, and what ``metrics.json``'s ``val/*`` and
``test/*`` hold) and raw (``*_uncalibrated/*``), so the report can show before and after.

The run folder's file is untrusted input (`engage_seq.serving.calibration_file`); the metrics
go through the functions that scored the run in training
(`engage_seq.training.calibration.output_metrics`), on CPU in fp32."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engage_seq.evaluation.run_folder import EvaluationError
from engage_seq.models.calibration import Calibration, CalibrationError, CalibrationLayer
from engage_seq.models.engagement import EngagementModel
from engage_seq.serving.calibration_file import read_calibration
from engage_seq.training.batches import EncodedSamples
from engage_seq.training.calibration import output_metrics, raw_outputs


@dataclass(frozen=True)
class CalibratedScores:
    """One split's predictions (row order) and metrics (unprefixed), after and before."""

    horizon: np.ndarray  # (N, L) calibrated
    next_event: np.ndarray  # (N, C) calibrated (temperature-scaled softmax)
    metrics: dict[str, float]
    uncalibrated_horizon: np.ndarray  # (N, L)
    uncalibrated_metrics: dict[str, float]


def run_calibration(run_dir: Path, targets: list[str]) -> Calibration | None:
    """The run's calibration.json, validated and checked against its horizon targets."""
    try:
        calibration = read_calibration(run_dir)
        if calibration is not None:
            calibration.check_outputs(targets)
    except CalibrationError as error:
        raise EvaluationError(str(error)) from None
    return calibration


def score_calibrated(
    model: EngagementModel,
    encoded: EncodedSamples,
    batch_size: int,
    targets: list[str],
    calibration: Calibration,
) -> CalibratedScores:
    """Raw outputs once (CPU, fp32, evaluation batches), then scored through both layers."""
    model = model.cpu().float().eval()
    raw, labels, order = raw_outputs(model, encoded, batch_size)
    layer = CalibrationLayer(calibration, model.n_outputs)
    identity = CalibrationLayer(None, model.n_outputs)
    horizon_logits, next_logits, _ = model.split_outputs(raw)
    calibrated = np.zeros((len(encoded), model.n_outputs + model.n_next_classes))
    plain = np.zeros_like(calibrated)
    calibrated[order] = layer(horizon_logits, next_logits).double().numpy()  # back to row order
    plain[order] = identity(horizon_logits, next_logits).double().numpy()
    n_targets = model.n_outputs
    return CalibratedScores(
        calibrated[:, :n_targets],
        calibrated[:, n_targets:],
        output_metrics(model, layer, raw, labels, targets),
        plain[:, :n_targets],
        output_metrics(model, identity, raw, labels, targets),
    )
