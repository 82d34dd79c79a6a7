"""`RFMLogisticRegression`: RFM aggregates and an L2 logistic regression, the classic propensity
model and the floor a sequence model must clear."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engage_seq.baselines.features import AggregateFeatures
from engage_seq.baselines.frames import FORMAT_VERSION, Frame, check_format
from engage_seq.baselines.horizon import HorizonBaseline, binary_labels
from engage_seq.baselines.logistic import fit_logistic, sigmoid


class RFMLogisticRegression(HorizonBaseline):
    """Standardised RFM aggregates + one L2 logistic regression per target (Newton, numpy).

    Standardisation uses training means and standard deviations (constant features get
    std 1, so they stay 0). ``val`` is only scored (``val_log_loss``), never fitted on.
    """

    name = "rfm_logreg"

    def __init__(self, l2: float = 1.0, max_iter: int = 100, tol: float = 1e-6) -> None:
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.val_log_loss: dict[str, float] = {}
        self.iterations: dict[str, int] = {}

    def fit(
        self, train: Frame, val: Frame | None, label_columns: Sequence[str]
    ) -> RFMLogisticRegression:
        x = self._features(train, label_columns).astype(np.float64)
        y = binary_labels(train, "train", self.label_columns)
        y_val = binary_labels(val, "val", self.label_columns) if val is not None else None
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 1e-12, std, 1.0)
        z = (x - self.mean) / self.std
        coefs, intercepts = [], []
        for j, column in enumerate(self.label_columns):
            coef, intercept, iterations = fit_logistic(z, y[:, j], self.l2, self.max_iter, self.tol)
            coefs.append(coef)
            intercepts.append(intercept)
            self.iterations[column] = iterations
        self.coef = np.stack(coefs, axis=1)  # (F, L)
        self.intercept = np.asarray(intercepts)
        if val is not None and y_val is not None:
            p = np.clip(self.predict_proba(val), 1e-15, 1 - 1e-15)
            loss = -(y_val * np.log(p) + (1 - y_val) * np.log1p(-p)).mean(axis=0)
            self.val_log_loss = dict(zip(self.label_columns, map(float, loss), strict=True))
        return self

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, n_targets) float64 probabilities."""
        z = (self.features.transform(samples).astype(np.float64) - self.mean) / self.std
        return sigmoid(z @ self.coef + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "format": FORMAT_VERSION,
            "params": {"l2": self.l2, "max_iter": self.max_iter, "tol": self.tol},
            "label_columns": self.label_columns,
            "features": self.features.to_dict(),
            "feature_names": self.features.names,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "iterations": self.iterations,
            "val_log_loss": self.val_log_loss,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RFMLogisticRegression:
        check_format(d, cls.name)
        out = cls(**d["params"])
        out.label_columns = list(d["label_columns"])
        out.features = AggregateFeatures.from_dict(d["features"])
        n_features, n_targets = len(out.features.names), len(out.label_columns)
        out.mean = np.asarray(d["mean"], dtype=np.float64)
        out.std = np.asarray(d["std"], dtype=np.float64)
        out.coef = np.asarray(d["coef"], dtype=np.float64).reshape(n_features, n_targets)
        out.intercept = np.asarray(d["intercept"], dtype=np.float64)
        out.iterations = dict(d.get("iterations", {}))
        out.val_log_loss = dict(d.get("val_log_loss", {}))
        return out
