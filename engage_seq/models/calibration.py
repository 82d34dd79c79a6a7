"""Post-hoc calibration of the horizon outputs: the record of a fitted calibration
(`Calibration`, what ``calibration.json`` and the artifact's metadata hold) and the scriptable
module that applies it (`CalibrationLayer`), inside `ProbabilityModel`, so both artifact entry
points return calibrated probabilities.

Why post hoc: training windows sit months before the test window, so the base rate drifts; a
calibration fitted on the newest labelled window (validation) moves the probabilities to that
window's level without touching the ranking (temperature and Platt are monotone; isotonic is
monotone non-decreasing). Fitting is `engage_seq.training.calibration`; this module imports
only torch and validates what it is given, because a run folder is untrusted input.

Per horizon output (one sigmoid target each), on the logit ``z``:

- ``temperature``: ``sigmoid(scale * z)`` (``scale`` = 1 / temperature);
- ``platt``: ``sigmoid(scale * z + bias)``;
- ``isotonic``: ``p = sigmoid(z)``, then piecewise-linear interpolation through at most
  `MAX_KNOTS` knots ``(x, y)`` (increasing ``x``, non-decreasing ``y``), constant beyond the
  first and last knot; ``y`` is kept inside [`PROBABILITY_FLOOR`, 1 - `PROBABILITY_FLOOR`].

The next-event softmax, when the task has one, is temperature-scaled
(``softmax(next_event_scale * logits)``) whatever the method; ``none`` changes nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engage_seq.common.errors import EngageSeqError

METHODS = ("none", "temperature", "platt", "isotonic")
CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = 1
MAX_KNOTS = 100
PROBABILITY_FLOOR = 1e-4  # isotonic ends: never exactly 0 or 1 (log-loss stays finite)
_SCALE_RANGE = (1e-3, 1e3)  # a positive scale keeps the ranking; beyond this it is broken


class CalibrationError(EngageSeqError, ValueError):
    """A calibration (``calibration.json`` or an artifact's ``calibration`` key) is malformed."""


@dataclass(frozen=True)
class OutputCalibration:
    """One horizon output's fitted parameters (the ones its method uses; the rest stay at
    their identity values)."""

    name: str
    scale: float = 1.0
    bias: float = 0.0
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration: method, per-output parameters in output order, the next-event
    scale, where it was fitted and what it did there (validation metrics before/after)."""

    method: str
    outputs: tuple[OutputCalibration, ...]
    next_event_scale: float = 1.0
    fitted_on: dict[str, Any] = field(default_factory=dict)  # split, n_samples, cutoffs
    before: dict[str, float] = field(default_factory=dict)  # fitted-on split, uncalibrated
    after: dict[str, float] = field(default_factory=dict)  # the same samples, calibrated

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``calibration.json`` and the artifact metadata's ``calibration``."""
        return {
            "format": CALIBRATION_FORMAT,
            "method": self.method,
            "outputs": [
                {
                    "name": o.name,
                    "scale": o.scale,
                    "bias": o.bias,
                    "knots_x": list(o.knots_x),
                    "knots_y": list(o.knots_y),
                }
                for o in self.outputs
            ],
            "next_event_scale": self.next_event_scale,
            "fitted_on": dict(self.fitted_on),
            "before": dict(self.before),
            "after": dict(self.after),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = CALIBRATION_FILE) -> Calibration:
        """Validate untrusted JSON (``where`` names the file in errors): allow-listed method,
        finite numbers, positive scales, knots increasing and inside [0, 1]."""
        if not isinstance(data, Mapping):
            raise CalibrationError(f"{where}: not a JSON object; {_REDO}")
        method = data.get("method")
        if method not in METHODS:
            raise CalibrationError(f"{where}: key 'method' is {method!r}, not one of {METHODS}")
        outputs = data.get("outputs")
        if not isinstance(outputs, list):
            raise CalibrationError(f"{where}: key 'outputs' should be a list; {_REDO}")
        parsed = tuple(_output(o, method, f"{where}: outputs[{i}]") for i, o in enumerate(outputs))
        return cls(
            method=method,
            outputs=parsed,
            next_event_scale=_scale(data.get("next_event_scale", 1.0), f"{where}: next_event"),
            fitted_on=_mapping(data.get("fitted_on", {}), f"{where}: key 'fitted_on'"),
            before=_numbers(data.get("before", {}), f"{where}: key 'before'"),
            after=_numbers(data.get("after", {}), f"{where}: key 'after'"),
        )

    def check_outputs(self, names: Sequence[str], where: str = CALIBRATION_FILE) -> None:
        """Refuse a calibration fitted for other outputs than the model's horizon targets."""
        found = [o.name for o in self.outputs]
        if found != list(names):
            raise CalibrationError(
                f"{where}: calibrates outputs {found}, the model's horizon outputs are "
                f"{list(names)}; retrain the run (with calibration.method=none "
                "for an uncalibrated model: its golden batch is calibrated)"
            )


_REDO = "it is written by engage-train (calibration.method); retrain to rewrite it"


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CalibrationError(f"{where} should be a finite number, got {value!r}; {_REDO}")
    return float(value)


def _scale(value: Any, where: str) -> float:
    scale = _finite(value, f"{where} scale")
    if not _SCALE_RANGE[0] <= scale <= _SCALE_RANGE[1]:
        raise CalibrationError(f"{where} scale {scale} is outside {_SCALE_RANGE}; {_REDO}")
    return scale


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise CalibrationError(f"{where} should be a JSON object; {_REDO}")
    return dict(value)


def _numbers(value: Any, where: str) -> dict[str, float]:
    """Metric values: finite numbers or null (a metric undefined on one class)."""
    out = {}
    for key, number in _mapping(value, where).items():
        out[str(key)] = math.nan if number is None else _finite(number, f"{where}[{key!r}]")
    return out


def _knots(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) > MAX_KNOTS:
        raise CalibrationError(f"{where} should be a list of at most {MAX_KNOTS} numbers")
    knots = tuple(_finite(v, where) for v in value)
    if any(not 0.0 <= v <= 1.0 for v in knots):
        raise CalibrationError(f"{where} holds values outside [0, 1]; {_REDO}")
    return knots


def _output(value: Any, method: str, where: str) -> OutputCalibration:
    entry = _mapping(value, where)
    name = entry.get("name")
    if not isinstance(name, str):
        raise CalibrationError(f"{where}: key 'name' should be a string; {_REDO}")
    x = _knots(entry.get("knots_x", []), f"{where}: knots_x")
    y = _knots(entry.get("knots_y", []), f"{where}: knots_y")
    if method == "isotonic":
        if not x or len(x) != len(y):
            raise CalibrationError(f"{where}: knots_x and knots_y need the same length >= 1")
        if any(b <= a for a, b in itertools.pairwise(x)):
            raise CalibrationError(f"{where}: knots_x must be strictly increasing; {_REDO}")
        if any(b < a for a, b in itertools.pairwise(y)):
            raise CalibrationError(f"{where}: knots_y must be non-decreasing; {_REDO}")
    bias = _finite(entry.get("bias", 0.0), f"{where}: bias")
    if method == "temperature" and bias != 0.0:
        raise CalibrationError(f"{where}: temperature scaling has no bias; {_REDO}")
    return OutputCalibration(name, _scale(entry.get("scale", 1.0), where), bias, x, y)


class CalibrationLayer(nn.Module):
    """(horizon logits (B, L), next-event logits (B, C)) -> (B, L + C) probabilities, the
    fitted calibration applied (``None``: plain sigmoid and softmax, bit for bit).

    Parameters are buffers (fixed, not trained); knots are padded to one width by repeating
    each output's last knot, which interpolation reads as a flat end."""

    def __init__(self, calibration: Calibration | None, n_outputs: int) -> None:
        super().__init__()
        outputs = calibration.outputs if calibration is not None else ()
        if calibration is not None and len(outputs) != n_outputs:
            raise CalibrationError(
                f"calibration for {len(outputs)} horizon outputs, the model has {n_outputs}"
            )
        self.method: str = calibration.method if calibration is not None else "none"
        self.next_event_scale: float = (
            calibration.next_event_scale if calibration is not None else 1.0
        )
        width = max([2, *(len(o.knots_x) for o in outputs)])
        knots_x = torch.zeros(n_outputs, width)  # (L, K)
        knots_y = torch.zeros(n_outputs, width)  # (L, K)
        for i, o in enumerate(outputs):
            if o.knots_x:
                pad = width - len(o.knots_x)
                knots_x[i] = torch.tensor([*o.knots_x, *[o.knots_x[-1]] * pad])
                knots_y[i] = torch.tensor([*o.knots_y, *[o.knots_y[-1]] * pad])
        self.register_buffer("scale", torch.tensor([o.scale for o in outputs] or [1.0] * n_outputs))
        self.register_buffer("bias", torch.tensor([o.bias for o in outputs] or [0.0] * n_outputs))
        self.register_buffer("knots_x", knots_x)
        self.register_buffer("knots_y", knots_y)

    def forward(
        self,
        horizon_logits: torch.Tensor,  # (B, L)
        next_logits: torch.Tensor,  # (B, C)
    ) -> torch.Tensor:  # (B, L + C)
        horizon = self.horizon_probabilities(horizon_logits)
        if self.next_event_scale != 1.0:
            next_logits = next_logits * self.next_event_scale
        return torch.cat([horizon, torch.softmax(next_logits, dim=-1)], dim=-1)

    def horizon_probabilities(self, logits: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L)
        if self.method == "none":
            return torch.sigmoid(logits)
        if self.method == "isotonic":
            return self._interpolate(torch.sigmoid(logits))
        return torch.sigmoid(logits * self.scale + self.bias)

    def _interpolate(self, probs: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L)
        """Piecewise-linear through each output's knots, flat beyond the ends."""
        x, y = self.knots_x, self.knots_y  # (L, K)
        query = probs.t().contiguous()  # (L, B)
        upper = torch.searchsorted(x, query)  # (L, B): first knot >= query
        low = (upper - 1).clamp(0, x.shape[1] - 2)
        high = low + 1
        x0, x1 = x.gather(1, low), x.gather(1, high)
        y0, y1 = y.gather(1, low), y.gather(1, high)
        t = ((query - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
        return (y0 + t * (y1 - y0)).t()
