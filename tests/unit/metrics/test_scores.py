"""Metric classes against hand computations (they score models, baselines and oracles)."""

from __future__ import annotations

import math

import pytest
import torch

from engage_seq.metrics.scores import (
    HorizonMetrics,
    NextEventMetrics,
    lift_at_top,
    lognormal_nll,
    score_probabilities,
)


def test_horizon_metrics_match_hand_computation() -> None:
    metrics = HorizonMetrics(["a", "b"])
    logits = torch.tensor([[2.0, -1.0], [-2.0, 0.5], [0.0, 1.0], [1.0, -3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    metrics.update(logits[:2], labels[:2])
    metrics.update(logits[2:], labels[2:])
    out = metrics.compute()
    probs = torch.sigmoid(logits)
    bce = torch.nn.functional.binary_cross_entropy(probs, labels, reduction="none").mean(0)
    assert out["n_samples"] == 4
    assert out["logloss/a"] == pytest.approx(float(bce[0]), rel=1e-5)
    assert out["brier/b"] == pytest.approx(float(((probs - labels) ** 2).mean(0)[1]), rel=1e-5)
    assert out["positive_rate"] == pytest.approx(0.5)
    # target a: positives scored 0.88 and 0.5, negatives 0.12 and 0.73 -> 3 of 4 pairs ordered
    assert out["auroc/a"] == pytest.approx(0.75)
    assert out["auroc/b"] == pytest.approx(1.0)
    assert out["auroc"] == pytest.approx(0.875)
    # top 10% of 4 = the single best score: a -> 0.88 (positive), b -> 0.73 (positive); base 0.5
    assert out["lift_top10/a"] == pytest.approx(2.0)
    # ECE with one sample per bin: mean |p - y|
    assert out["ece/a"] == pytest.approx(float((probs[:, 0] - labels[:, 0]).abs().mean()), rel=1e-5)


def test_one_class_split_reports_undefined_ranking_metrics() -> None:
    metrics = HorizonMetrics(["a"])
    metrics.update(torch.tensor([[0.3], [-1.0]]), torch.zeros(2, 1))
    out = metrics.compute()
    assert math.isnan(out["auroc"]) and math.isnan(out["auprc"]) and math.isnan(out["lift_top10"])
    assert out["logloss"] > 0


def test_lift_is_relative_to_the_base_rate() -> None:
    probs = torch.arange(20, dtype=torch.float32)
    labels = torch.zeros(20)
    labels[[19, 18, 0, 1]] = 1  # both of the top 2 (10%) are positive; base rate 0.2
    assert lift_at_top(probs, labels, 0.10) == pytest.approx(5.0)


def test_next_event_metrics_match_hand_computation() -> None:
    metric = NextEventMetrics(n_classes=4)
    logits = torch.tensor(
        [[3.0, 2.0, 1.0, 0.0], [0.0, 3.0, 2.0, 1.0], [0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 1.0, 2.0]]
    )
    classes = torch.tensor([0, 2, 3, 1])  # right, 2nd best, right, worst
    metric.update(logits, classes)
    out = metric.compute()
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["top3_accuracy"] == pytest.approx(0.75)
    nll = torch.nn.functional.cross_entropy(logits, classes)
    assert out["nll"] == pytest.approx(float(nll), rel=1e-6)
    # per class F1: 0 -> 2/3 (tp 1, support 1, predicted 2), 1 -> 0 (predicted once, never
    # right), 2 -> 0 (support 1, never predicted), 3 -> 1
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0 + 0 + 1) / 4)


def test_absent_classes_do_not_count_in_macro_f1() -> None:
    metric = NextEventMetrics(n_classes=5)  # classes 3 and 4 never occur
    metric.update(torch.tensor([[5.0, 0, 0, 0, 0], [0, 5.0, 0, 0, 0]]), torch.tensor([0, 1]))
    assert metric.compute()["macro_f1"] == pytest.approx(1.0)


def test_lognormal_nll_matches_torch_distribution() -> None:
    params = torch.tensor([[0.5, -0.3], [2.0, 0.4]])
    hours = torch.tensor([1.7, 30.0])
    nll, _ = lognormal_nll(params, hours)
    dist = torch.distributions.LogNormal(params[:, 0], params[:, 1].exp())
    assert torch.allclose(nll, -dist.log_prob(hours), atol=1e-5)


def test_scoring_probabilities_equals_scoring_logits() -> None:
    logits = torch.tensor([[2.0], [-1.0], [0.3], [-2.5]])
    labels = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    direct = HorizonMetrics(["x"])
    direct.update(logits, labels)
    from_probs = score_probabilities(["x"], torch.sigmoid(logits), labels)
    for name, value in direct.compute().items():
        assert from_probs[name] == pytest.approx(value, rel=1e-5, abs=1e-7)
