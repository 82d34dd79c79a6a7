"""The numbers behind the report's figures, computed without matplotlib (so a report without
the ``plots`` extra still has every table): calibration bins, score deciles, the gains curve,
ROC and precision-recall points, and the top-10 % capture."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch
from torchmetrics.functional.classification import binary_precision_recall_curve, binary_roc

from engage_seq.metrics.scores import CALIBRATION_BINS, TOP_FRACTION

N_DECILES = 10
GAINS_POINTS = 401


def calibration_bins(probs: np.ndarray, labels: np.ndarray) -> pl.DataFrame:
    """The calibration error's own bins: `CALIBRATION_BINS` equal-width bins over [0, 1],
    assigned as torchmetrics does (``bucketize(right=True) - 1`` on float32, a probability of
    exactly 1 in an extra last bin), so the counts-weighted mean of ``gap`` is ``ece``."""
    p = torch.tensor(np.asarray(probs, dtype=np.float32))
    edges = torch.linspace(0, 1, CALIBRATION_BINS + 1, dtype=torch.float32)
    index = (torch.bucketize(p, edges, right=True) - 1).numpy()
    n_bins = CALIBRATION_BINS + 1
    count = np.bincount(index, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(index, weights=p.double().numpy(), minlength=n_bins)
    sum_y = np.bincount(index, weights=np.asarray(labels, dtype=np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, rate = sum_p / count, sum_y / count
    lower = np.append(edges.double().numpy()[:-1], 1.0)
    upper = np.append(edges.double().numpy()[1:], 1.0)
    frame = pl.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": lower,
            "upper": upper,
            "n": count,
            "mean_predicted": mean_p,
            "observed_rate": rate,
        }
    ).with_columns(
        (pl.col("observed_rate") - pl.col("mean_predicted")).alias("gap"),
    )
    return frame.filter((pl.col("bin") < CALIBRATION_BINS) | (pl.col("n") > 0)).fill_nan(None)


def ranking_order(probs: np.ndarray) -> np.ndarray:
    """Rows best score first, ties in row order (the stable sort `lift_at_top` uses)."""
    return np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")


def decile_table(probs: np.ndarray, labels: np.ndarray) -> pl.DataFrame:
    """Per score decile (1 = highest scores): users, positives, rate, lift over the average,
    and the cumulative share of all positives captured down to that decile."""
    order = ranking_order(probs)
    y = np.asarray(labels, dtype=np.float64)[order]
    parts = np.array_split(np.arange(y.size), N_DECILES)
    n = np.array([p.size for p in parts])
    positives = np.array([y[p].sum() for p in parts])
    base = y.mean() if y.size else math.nan
    rate = positives / np.maximum(n, 1)
    return pl.DataFrame(
        {
            "decile": np.arange(1, N_DECILES + 1),
            "n": n,
            "positives": positives.astype(np.int64),
            "rate": rate,
            "lift": rate / base if base > 0 else np.full(N_DECILES, np.nan),
            "cumulative_capture": np.cumsum(positives) / max(y.sum(), 1.0),
        }
    )


def gains_curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of users contacted, share of positives reached), best scores first."""
    y = np.asarray(labels, dtype=np.float64)[ranking_order(probs)]
    reached = np.concatenate([[0.0], np.cumsum(y)]) / max(y.sum(), 1.0)
    contacted = np.arange(y.size + 1) / max(y.size, 1)
    keep = np.unique(np.linspace(0, y.size, GAINS_POINTS).round().astype(np.int64))
    return contacted[keep], reached[keep]


def captured_at_top(lift: float, n: int, fraction: float = TOP_FRACTION) -> float:
    """Share of all positives in the top ``fraction`` by score, from ``lift_top10`` itself
    (lift = precision@k / base rate, k = ceil(fraction * n)), so text and metric agree."""
    k = max(1, math.ceil(fraction * n))
    return lift * k / n if n else math.nan


def roc_pr(probs: np.ndarray, labels: np.ndarray) -> tuple[tuple[np.ndarray, ...], ...]:
    """((false positive rate, true positive rate), (recall, precision)) of one scorer."""
    p = torch.tensor(np.asarray(probs, dtype=np.float32))
    y = torch.tensor(np.asarray(labels)).long()
    fpr, tpr, _ = binary_roc(p, y)
    precision, recall, _ = binary_precision_recall_curve(p, y)
    return (fpr.numpy(), tpr.numpy()), (recall.numpy(), precision.numpy())
