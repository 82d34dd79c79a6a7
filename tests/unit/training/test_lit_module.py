"""LightningModule pieces that need no Trainer: metric names, unknown-token training."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
import torch

from engage_seq.metrics.direction import metric_mode
from engage_seq.models.engagement import EngagementModel
from engage_seq.training.lit_module import EngagementLitModule, warmup_cosine


def test_metric_mode_knows_the_direction_and_refuses_unknown_names() -> None:
    assert metric_mode("val/auroc") == "max"
    assert metric_mode("val/logloss") == "min"
    assert metric_mode("val/brier") == "min"
    assert metric_mode("val/accuracy") == "max"
    assert metric_mode("val/nll") == "min"
    for bad in ("val/loss", "test/auroc", "auroc", "val/n_samples"):
        with pytest.raises(ValueError, match="val/auroc"):
            metric_mode(bad)


def test_unknown_token_replacement_touches_only_real_tokens() -> None:
    model = EngagementModel(10, 6, 6, 1, max_len=8)
    module = EngagementLitModule(model, ["purchase"], unknown_token_rate=1.0)
    events = torch.tensor([[4, 5, 0], [3, 0, 0]])
    attributes = events.unsqueeze(-1).clone()
    batch = (events, events.clone(), attributes, torch.zeros(2, 3, 0), torch.zeros(2, 3, 6),
             torch.tensor([2, 1]), torch.zeros(2, 0), torch.zeros(2, 1))  # fmt: skip
    out = module._with_unknown_tokens(batch)
    assert out[0].tolist() == [[1, 1, 0], [1, 0, 0]]
    assert out[1].tolist() == [[1, 1, 0], [1, 0, 0]]
    assert out[2].squeeze(-1).tolist() == [[1, 1, 0], [1, 0, 0]]
    module.hparams["unknown_token_rate"] = 0.0
    assert module._with_unknown_tokens(batch)[0] is events


def test_warmup_then_cosine_schedule() -> None:
    values = [warmup_cosine(step, warmup_steps=4, total_steps=104, min_ratio=0.1) for step in
              range(105)]  # fmt: skip
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[54] == pytest.approx(0.55)  # half way through the decay
    assert values[104] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values[3:]))


def test_multitask_loss_masks_samples_without_a_next_event() -> None:
    torch.manual_seed(0)
    model = EngagementModel(10, 6, 6, 1, max_len=8, n_next_classes=9, time_to_next=True)
    module = EngagementLitModule(model, ["purchase"])
    raw = torch.randn(3, 1 + 9 + 2)
    # labels: purchase, next class (-1 = none), hours (NaN when none)
    labels = torch.tensor([[1.0, 3.0, 2.5], [0.0, -1.0, float("nan")], [0.0, 0.0, 0.1]])
    losses = module.loss(raw, labels)
    keep = torch.tensor([0, 2])
    expected_ce = torch.nn.functional.cross_entropy(raw[keep, 1:10], torch.tensor([3, 0]))
    assert losses["next_event"] == pytest.approx(float(expected_ce), rel=1e-5)
    expected_bce = torch.nn.functional.binary_cross_entropy_with_logits(raw[:, :1], labels[:, :1])
    assert losses["horizon"] == pytest.approx(float(expected_bce), rel=1e-5)
    assert torch.isfinite(losses["time"]) and torch.isfinite(losses["loss"])
    weighted = losses["horizon"] + losses["next_event"] + 0.1 * losses["time"]
    assert losses["loss"] == pytest.approx(float(weighted), rel=1e-5)


def test_mismatched_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="target names"):
        EngagementLitModule(EngagementModel(10, 6, 6, 2, max_len=8), ["purchase"])


def test_non_finite_loss_stops_training_and_names_the_batch() -> None:
    """Labels turned NaN in the third batch (a stand-in for a diverging model): the run stops
    there with a message naming the step, batch and epoch, instead of training on NaN."""
    torch.manual_seed(0)
    model = EngagementModel(10, 6, 6, 1, max_len=8)
    module = EngagementLitModule(model, ["purchase"])

    def batch(labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        events = torch.randint(2, 10, (4, 8))
        no_attributes = torch.zeros(4, 8, 0, dtype=torch.long)
        return (events, torch.randint(2, 6, (4, 8)), no_attributes, torch.zeros(4, 8, 0),
                torch.zeros(4, 8, 6), torch.full((4,), 8), torch.zeros(4, 0), labels)  # fmt: skip

    batches = [batch(torch.ones(4, 1)) for _ in range(2)] + [batch(torch.full((4, 1), torch.nan))]
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"non-finite training loss nan at step 2 "
                       r"\(batch 2 of epoch 0\); lower optim\.lr"):  # fmt: skip
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
