"""LightningModule: loss, metrics, optimiser. Library code: built from plain arguments."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from engage_seq.data import Batch
from engage_seq.model import EngagementModel

EVAL_SPLITS = ("val", "test")


class _SplitMetrics(nn.Module):
    """Per-target AUROC / AP plus running log-loss and Brier sums for one split."""

    def __init__(self, n_targets: int) -> None:
        super().__init__()
        self.auroc = nn.ModuleList(BinaryAUROC() for _ in range(n_targets))
        self.auprc = nn.ModuleList(BinaryAveragePrecision() for _ in range(n_targets))
        self.register_buffer("logloss_sum", torch.zeros(n_targets, dtype=torch.float64))
        self.register_buffer("brier_sum", torch.zeros(n_targets, dtype=torch.float64))
        self.register_buffer("positives", torch.zeros(n_targets, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits, labels = logits.float(), labels.float()
        probs = torch.sigmoid(logits)
        for i, (auroc, auprc) in enumerate(zip(self.auroc, self.auprc, strict=True)):
            auroc.update(probs[:, i], labels[:, i].long())
            auprc.update(probs[:, i], labels[:, i].long())
        bce = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        self.logloss_sum += bce.sum(0).double()
        self.brier_sum += ((probs - labels) ** 2).sum(0).double()
        self.positives += labels.sum(0).double()
        self.count += labels.shape[0]

    def compute(self, target_names: list[str]) -> dict[str, float]:
        """Macro averages under plain names; per-target values as ``name/<target>`` if >1."""
        n = max(float(self.count), 1.0)
        per_target: dict[str, list[float]] = {
            "auroc": [float(m.compute()) for m in self.auroc],
            "auprc": [float(m.compute()) for m in self.auprc],
            "logloss": (self.logloss_sum / n).tolist(),
            "brier": (self.brier_sum / n).tolist(),
            "positive_rate": (self.positives / n).tolist(),
        }
        out: dict[str, float] = {"n_samples": float(self.count)}
        for name, values in per_target.items():
            out[name] = sum(values) / len(values)
            if len(values) > 1:
                out.update({f"{name}/{t}": v for t, v in zip(target_names, values, strict=True)})
        return out

    def reset(self) -> None:
        for m in [*self.auroc, *self.auprc]:
            m.reset()
        for buf in (self.logloss_sum, self.brier_sum, self.positives, self.count):
            buf.zero_()


class EngagementLitModule(L.LightningModule):
    """Trains an `EngagementModel` with BCE on one or several horizon targets.

    ``metadata`` (vocabulary, feature settings, task) rides along in every checkpoint, so export
    needs nothing but the checkpoint.
    """

    def __init__(
        self,
        model: EngagementModel,
        target_names: list[str],
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # metadata goes into checkpoint["engage_seq"] (on_save_checkpoint), not into hparams.
        self.save_hyperparameters(ignore=["model", "metadata"])
        self.model = model
        self.target_names = list(target_names)
        self.metadata = metadata or {}
        self.split_metrics = nn.ModuleDict(
            {split: _SplitMetrics(len(target_names)) for split in EVAL_SPLITS}
        )
        self.last_metrics: dict[str, float] = {}

    def forward(self, batch: Batch) -> torch.Tensor:
        event_ids, channel_ids, time_features, lengths, _ = batch
        return self.model(event_ids, channel_ids, time_features, lengths)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), batch[-1])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[-1].shape[0])
        return loss

    def _eval_step(self, split: str, batch: Batch) -> None:
        logits = self(batch)
        labels = batch[-1]
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
        self.log(f"{split}/loss", loss, batch_size=labels.shape[0])
        self.split_metrics[split].update(logits, labels)

    def _eval_epoch_end(self, split: str) -> None:
        metrics = self.split_metrics[split]
        values = metrics.compute(self.target_names)
        metrics.reset()
        for name, value in values.items():
            self.log(f"{split}/{name}", value, prog_bar=name == "auroc")
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
        return torch.sigmoid(self(batch).float())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["engage_seq"] = {
            "model_config": dict(self.model.config),
            "target_names": self.target_names,
            **self.metadata,
        }
