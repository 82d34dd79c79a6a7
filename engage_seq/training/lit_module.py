"""LightningModule: losses, metrics, optimiser and schedule. Built from plain arguments."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn

from engage_seq.metrics.scores import HorizonMetrics, NextEventMetrics, lognormal_nll
from engage_seq.models.engagement import EngagementModel
from engage_seq.training.batches import PAD_ID, UNKNOWN_ID, Batch

EVAL_SPLITS = ("val", "test")
SCHEDULES = ("cosine", "constant")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from ~0, then cosine decay to ``min_ratio`` at the end.

    Warm-up keeps the first Adam steps (whose variance estimates are still poor) from
    knocking a freshly initialised Transformer off course; the decay is what lets a short
    CPU budget end on a low-noise solution.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def with_unknown_tokens(batch: Batch, rate: float) -> Batch:
    """Replace a share ``rate`` of real tokens by the unknown id, so its embedding is trained.

    The vocabulary covers every training token, so without this the unknown id would never be
    seen in training, yet serving and later splits meet unseen values.
    """
    if rate <= 0:
        return batch
    event_ids, channel_ids, attribute_ids, numeric, time_features, lengths, aggregates, labels = (
        batch
    )
    ids = []
    for tokens in (event_ids, channel_ids, attribute_ids):
        drop = (torch.rand(tokens.shape, device=tokens.device) < rate) & (tokens != PAD_ID)
        ids.append(torch.where(drop, torch.full_like(tokens, UNKNOWN_ID), tokens))
    return ids[0], ids[1], ids[2], numeric, time_features, lengths, aggregates, labels


class EngagementLitModule(L.LightningModule):
    """Trains an `EngagementModel`: BCE for horizon targets, cross-entropy for the next event
    type and a log-normal NLL for the time to it, summed with weights (multi-task).

    Label layout of a batch (see `engage_seq.training.batches.encode_samples`): the horizon labels,
    then,
    with a next-event head, the class (-1 = none, masked) and the hours to the next event.
    ``metadata`` (vocabulary, feature settings, task) rides along in every checkpoint, so export
    needs nothing but the checkpoint.
    """

    def __init__(
        self,
        model: EngagementModel,
        target_names: list[str],
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        unknown_token_rate: float = 0.01,
        metadata: dict[str, Any] | None = None,
        next_event_weight: float = 1.0,
        time_weight: float = 0.1,
        schedule: str = "cosine",
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if len(target_names) != model.n_outputs:
            raise ValueError(f"{len(target_names)} target names for {model.n_outputs} outputs")
        # metadata goes into checkpoint["engage_seq"] (on_save_checkpoint), not into hparams.
        self.save_hyperparameters(ignore=["model", "metadata"])
        self.model = model
        self.target_names = list(target_names)
        self.metadata = metadata or {}
        self.n_targets = model.n_outputs
        self.n_classes = model.n_next_classes
        self.with_time = model.n_time_outputs > 0
        self.horizon_metrics = nn.ModuleDict(
            {s: HorizonMetrics(self.target_names) for s in EVAL_SPLITS if self.n_targets}
        )
        self.next_event_metrics = nn.ModuleDict(
            {s: NextEventMetrics(self.n_classes, self.with_time) for s in EVAL_SPLITS}
            if self.n_classes
            else {}
        )
        self.last_metrics: dict[str, float] = {}

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(*batch[:-1])

    def _with_unknown_tokens(self, batch: Batch) -> Batch:
        return with_unknown_tokens(batch, float(self.hparams["unknown_token_rate"]))

    def _split_labels(
        self, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> horizon labels (B, L), next classes (B,) int64, hours (B,), has-next mask (B,)."""
        horizon = labels[:, : self.n_targets]
        if not self.n_classes:
            empty = labels.new_zeros(labels.shape[0])
            return horizon, empty.long(), empty, empty.bool()
        classes = labels[:, self.n_targets].long()
        hours = labels[:, self.n_targets + 1]
        return horizon, classes, hours, classes >= 0

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-head losses and their weighted sum (``loss``), all in float32."""
        horizon_logits, next_logits, time_params = self.model.split_outputs(raw.float())
        horizon, classes, hours, has_next = self._split_labels(labels.float())
        losses: dict[str, torch.Tensor] = {}
        total = raw.new_zeros((), dtype=torch.float32)
        if self.n_targets:
            losses["horizon"] = nn.functional.binary_cross_entropy_with_logits(
                horizon_logits, horizon
            )
            total = total + losses["horizon"]
        if self.n_classes:
            # ignore_index keeps samples without a next event out of the mean (multi-task)
            classes_or_ignored = torch.where(has_next, classes, torch.full_like(classes, -100))
            if bool(has_next.any()):
                losses["next_event"] = nn.functional.cross_entropy(next_logits, classes_or_ignored)
                total = total + self.hparams["next_event_weight"] * losses["next_event"]
            if self.with_time and bool(has_next.any()):
                nll, _ = lognormal_nll(time_params[has_next], hours[has_next])
                losses["time"] = nll.mean()
                total = total + self.hparams["time_weight"] * losses["time"]
        losses["loss"] = total
        return losses

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # Random draws (dropout, unknown tokens) depend only on (seed, rank, epoch, batch), so
        # a run resumed mid-epoch reproduces the uninterrupted run exactly.
        key = (int(self.hparams["seed"]), self.global_rank, self.current_epoch, batch_idx)
        seed = hash(key) & 0x7FFF_FFFF_FFFF_FFFF
        # Not torch.manual_seed: it also queues lazy CUDA/XPU/MTIA seeding, recording a stack
        # trace each call (~1 ms per step on CPU, measured in scripts/bench_train.py).
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        batch = self._with_unknown_tokens(batch)
        losses = self.loss(self(batch), batch[-1])
        size = batch[-1].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=size)
        if len(losses) > 2:  # several heads: each one's loss too (one head: it is the loss)
            for name, value in losses.items():
                if name != "loss":
                    self.log(f"train/{name}", value, batch_size=size)
        if not torch.isfinite(losses["loss"]):
            value = float(losses["loss"].detach())
            raise FloatingPointError(
                f"non-finite training loss {value} at step {self.global_step} "
                f"(batch {batch_idx} of epoch {self.current_epoch}); lower optim.lr or check "
                "the numeric attributes for extreme values"
            )
        return losses["loss"]

    def _eval_step(self, split: str, batch: Batch) -> None:
        raw = self(batch).float()
        horizon_logits, next_logits, time_params = self.model.split_outputs(raw)
        horizon, classes, hours, has_next = self._split_labels(batch[-1].float())
        if self.n_targets:
            self.horizon_metrics[split].update(horizon_logits, horizon)
        if self.n_classes:
            self.next_event_metrics[split].update(
                next_logits[has_next], classes[has_next], time_params[has_next], hours[has_next]
            )

    def _eval_epoch_end(self, split: str) -> None:
        values: dict[str, float] = {}
        if self.n_classes:
            values.update(self.next_event_metrics[split].compute())
            self.next_event_metrics[split].reset()
        if self.n_targets:  # last, so n_samples counts every sample in a multi-task run
            values.update(self.horizon_metrics[split].compute())
            self.horizon_metrics[split].reset()
        for name, value in values.items():
            self.log(f"{split}/{name}", value, prog_bar=name in ("auroc", "accuracy"))
        self.last_metrics.update({f"{split}/{k}": v for k, v in values.items()})

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self.model.probabilities(self(batch))

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        if self.hparams["schedule"] == "constant":
            return {"optimizer": optimizer}
        estimated = self.trainer.estimated_stepping_batches
        if not math.isfinite(estimated):
            raise ValueError(
                "optim.schedule=cosine needs a finite run to decay over: set trainer.max_epochs "
                "or trainer.max_steps, or use optim.schedule=constant"
            )
        total = max(1, int(estimated))
        warmup = max(1, round(self.hparams["warmup_fraction"] * total))
        min_ratio = float(self.hparams["min_lr_ratio"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, min_ratio)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["engage_seq"] = {
            "model_config": dict(self.model.config),
            "target_names": self.target_names,
            **self.metadata,
        }
