"""LightningModule pieces that need no Trainer: metric names, unknown-token training."""

from __future__ import annotations

import pytest
import torch

from engage_seq.model import EngagementModel
from engage_seq.module import EngagementLitModule, _SplitMetrics, metric_mode


def test_metric_mode_knows_the_direction_and_refuses_unknown_names() -> None:
    assert metric_mode("val/auroc") == "max"
    assert metric_mode("val/logloss") == "min"
    assert metric_mode("val/brier") == "min"
    for bad in ("val/loss", "test/auroc", "auroc", "val/accuracy"):
        with pytest.raises(ValueError, match="val/auroc"):
            metric_mode(bad)


def test_unknown_token_replacement_touches_only_real_tokens() -> None:
    model = EngagementModel(10, 6, 6, 1, max_len=8)
    module = EngagementLitModule(model, ["purchase"], unknown_token_rate=1.0)
    events = torch.tensor([[4, 5, 0], [3, 0, 0]])
    attributes = events.unsqueeze(-1).clone()
    batch = (events, events.clone(), attributes, torch.zeros(2, 3, 0), torch.zeros(2, 3, 6),
             torch.tensor([2, 1]), torch.zeros(2, 1))  # fmt: skip
    out = module._with_unknown_tokens(batch)
    assert out[0].tolist() == [[1, 1, 0], [1, 0, 0]]
    assert out[1].tolist() == [[1, 1, 0], [1, 0, 0]]
    assert out[2].squeeze(-1).tolist() == [[1, 1, 0], [1, 0, 0]]
    module.hparams["unknown_token_rate"] = 0.0
    assert module._with_unknown_tokens(batch)[0] is events


def test_split_metrics_match_hand_computation() -> None:
    metrics = _SplitMetrics(n_targets=2)
    logits = torch.tensor([[2.0, -1.0], [-2.0, 0.5], [0.0, 1.0], [1.0, -3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    metrics.update(logits[:2], labels[:2])
    metrics.update(logits[2:], labels[2:])
    out = metrics.compute(["a", "b"])
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
