"""Metrics for both tasks, as torchmetrics states (reduced across DDP processes, float32-safe).

Neural models and baselines are scored by the same classes, so their numbers are comparable
by construction. Metric names are flat (``auroc``, ``nll``...) and logged as ``split/name``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_calibration_error,
)

HORIZON_METRICS = (
    "auroc",
    "auprc",
    "logloss",
    "brier",
    "ece",
    "lift_top10",
    "positive_rate",
    "mean_prediction",
)
NEXT_EVENT_METRICS = ("accuracy", "top3_accuracy", "macro_f1", "nll")
TIME_METRICS = ("time_nll", "time_mae_log_hours")
CALIBRATION_BINS = 15
TOP_FRACTION = 0.10


def lift_at_top(probs: torch.Tensor, labels: torch.Tensor, fraction: float) -> float:
    """Positive rate among the top ``fraction`` by score, over the overall positive rate.

    The number a campaign manager asks for: how many times more buyers in the contacted top
    10 % than in a random 10 %. Ties at the threshold are broken by a stable sort.
    """
    base = float(labels.float().mean())
    if base == 0.0:
        return math.nan
    k = max(1, math.ceil(fraction * probs.numel()))
    top = torch.argsort(probs, descending=True, stable=True)[:k]
    return float(labels[top].float().mean()) / base


class HorizonMetrics(Metric):
    """ROC-AUC, PR-AUC, log-loss, Brier, calibration error (15-bin ECE), lift in the top 10 %,
    positive rate and mean prediction, per target; macro averages under the plain names.

    Keeps every prediction (two floats per sample and target) because ranking metrics need
    them; that is a few MB for a million validation samples.
    """

    full_state_update = False

    def __init__(self, target_names: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)  # e.g. sync_on_compute=False: one process's samples only
        self.target_names = list(target_names)
        self.n_targets = len(self.target_names)
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:  # (B, L) each
        self.probs.append(torch.sigmoid(logits.detach().float()))
        self.labels.append(labels.detach().float())

    def compute(self) -> dict[str, float]:
        probs = _concat(self.probs, self.n_targets)
        labels = _concat(self.labels, self.n_targets)
        out: dict[str, float] = {"n_samples": float(labels.shape[0])}
        per_target = [
            _binary_scores(probs[:, i].contiguous(), labels[:, i].contiguous())
            for i in range(self.n_targets)
        ]
        for name in HORIZON_METRICS:
            values = [scores[name] for scores in per_target]
            out[name] = sum(values) / len(values)
            if len(values) > 1:
                out.update(
                    {f"{name}/{t}": v for t, v in zip(self.target_names, values, strict=True)}
                )
        return out


def _concat(parts: list[torch.Tensor] | torch.Tensor, width: int) -> torch.Tensor:
    if isinstance(parts, torch.Tensor):  # already concatenated by a DDP sync
        return parts.reshape(-1, width)
    if not parts:
        return torch.zeros(0, width)
    return torch.cat(parts).reshape(-1, width)


def _binary_scores(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Scores for one target; ranking metrics are NaN when a split has only one class."""
    targets = labels.long()
    both_classes = 0 < int(targets.sum()) < targets.numel()
    clipped = probs.clamp(1e-7, 1 - 1e-7)
    logloss = -(labels * clipped.log() + (1 - labels) * (1 - clipped).log()).mean()
    return {
        "auroc": float(binary_auroc(probs, targets)) if both_classes else math.nan,
        "auprc": float(binary_average_precision(probs, targets)) if both_classes else math.nan,
        "logloss": float(logloss),
        "brier": float(((probs - labels) ** 2).mean()),
        "ece": float(binary_calibration_error(probs, targets, n_bins=CALIBRATION_BINS)),
        "lift_top10": lift_at_top(probs, labels, TOP_FRACTION),
        "positive_rate": float(labels.mean()),
        "mean_prediction": float(probs.mean()),
    }


class NextEventMetrics(Metric):
    """Accuracy, top-3 accuracy, macro-F1 and NLL over event-type classes, plus (optionally)
    the log-normal NLL and the absolute error in log-hours of the time to the next event.

    Only sums are kept (a confusion matrix and counters), so DDP reduction is exact and cheap.
    Macro-F1 averages over classes that occur in the labels or the predictions, so a class
    that never appears (e.g. "unknown") does not drag the average to 0.
    """

    full_state_update = False

    def __init__(self, n_classes: int, with_time: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_classes = n_classes
        self.with_time = with_time
        self.add_state("confusion", torch.zeros(n_classes, n_classes), dist_reduce_fx="sum")
        self.add_state("top3_correct", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("nll_sum", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("time_nll_sum", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("time_abs_error_sum", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(
        self,
        logits: torch.Tensor,  # (B, C)
        classes: torch.Tensor,  # (B,) int64 in [0, C)
        time_params: torch.Tensor | None = None,  # (B, 2): mu, log_sigma of log(hours)
        hours: torch.Tensor | None = None,  # (B,) hours to the next event
    ) -> None:
        logits = logits.detach().float()
        classes = classes.long()
        predicted = logits.argmax(dim=1)
        flat = classes * self.n_classes + predicted
        self.confusion += torch.bincount(flat, minlength=self.n_classes**2).reshape(
            self.n_classes, self.n_classes
        )
        k = min(3, self.n_classes)
        self.top3_correct += (logits.topk(k, dim=1).indices == classes[:, None]).any(1).sum()
        self.nll_sum += torch.nn.functional.cross_entropy(logits, classes, reduction="sum")
        self.count += classes.numel()
        if self.with_time and time_params is not None and hours is not None:
            nll, log_hours = lognormal_nll(time_params.detach().float(), hours.float())
            self.time_nll_sum += nll.sum()
            self.time_abs_error_sum += (time_params[:, 0].float() - log_hours).abs().sum()

    def compute(self) -> dict[str, float]:
        n = float(self.count)
        confusion = self.confusion
        true_positive = confusion.diag()
        support = confusion.sum(1)
        predicted = confusion.sum(0)
        present = (support + predicted) > 0
        f1 = 2 * true_positive / (support + predicted).clamp(min=1)
        out = {
            "n_samples": n,
            "accuracy": float(true_positive.sum()) / n if n else math.nan,
            "top3_accuracy": float(self.top3_correct) / n if n else math.nan,
            "macro_f1": float(f1[present].mean()) if bool(present.any()) else math.nan,
            "nll": float(self.nll_sum) / n if n else math.nan,
        }
        if self.with_time:
            out["time_nll"] = float(self.time_nll_sum) / n if n else math.nan
            out["time_mae_log_hours"] = float(self.time_abs_error_sum) / n if n else math.nan
        return out


# The time to the next event can be 0 s (same-second events); log-normal needs > 0.
MIN_HOURS = 1.0 / 3600.0


def lognormal_nll(params: torch.Tensor, hours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample NLL of ``hours`` under LogNormal(mu, exp(log_sigma)); also log(hours).

    Gaps span seconds to days and are right-skewed, which a log-normal captures with two
    numbers; its median exp(mu) is the point forecast.
    """
    mu, log_sigma = params[:, 0], params[:, 1].clamp(-5.0, 5.0)
    log_hours = hours.clamp(min=MIN_HOURS).log()
    z = (log_hours - mu) * torch.exp(-log_sigma)
    nll = 0.5 * z**2 + log_sigma + log_hours + 0.5 * math.log(2 * math.pi)
    return nll, log_hours


def score_probabilities(
    target_names: list[str],
    horizon_probs: torch.Tensor | None = None,  # (N, L)
    horizon_labels: torch.Tensor | None = None,  # (N, L)
    next_probs: torch.Tensor | None = None,  # (N, C), rows sum to 1
    next_classes: torch.Tensor | None = None,  # (N,) int64
) -> dict[str, float]:
    """Metrics of ready-made probabilities (baselines, oracles) through the very classes that
    score the neural models, so every row of a results table is computed the same way."""
    out: dict[str, float] = {}
    if next_probs is not None and next_classes is not None:
        metric = NextEventMetrics(next_probs.shape[1])
        metric.update(next_probs.double().clamp_min(1e-12).log().float(), next_classes)
        out.update(metric.compute())
    if horizon_probs is not None and horizon_labels is not None:
        metric = HorizonMetrics(target_names)
        p = horizon_probs.double().clamp(1e-12, 1 - 1e-12)
        metric.update((p.log() - (-p).log1p()).float(), horizon_labels.float())
        out.update(metric.compute())
    return out
