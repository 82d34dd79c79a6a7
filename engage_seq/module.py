"""LightningModule: loss, metrics, optimiser. Library code: built from plain arguments."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from engage_seq.data import PAD_ID, UNKNOWN_ID, Batch
from engage_seq.model import EngagementModel

EVAL_SPLITS = ("val", "test")
METRIC_NAMES = ("auroc", "auprc", "logloss", "brier", "positive_rate")
# Which way is better, for checkpointing / early stopping / sweepers.
METRIC_MODES = {"auroc": "max", "auprc": "max", "logloss": "min", "brier": "min"}


def metric_mode(name: str) -> str:
    """'val/auroc' -> 'max'; raises for names that are not selectable metrics."""
    split, _, metric = name.partition("/")
    if split != "val" or metric.split("/")[0] not in METRIC_MODES:
        choices = ", ".join(f"val/{m}" for m in METRIC_MODES)
        raise ValueError(f"cannot select models by {name!r}; use one of: {choices}")
    return METRIC_MODES[metric.split("/")[0]]


class _SplitMetrics(nn.Module):
    """Per-target AUROC / AP / log-loss / Brier / positive rate for one split.

    All are torchmetrics states, so they are reduced across DDP processes and live in
    float32 on any device.
    """

    def __init__(self, n_targets: int) -> None:
        super().__init__()
        self.auroc = nn.ModuleList(BinaryAUROC() for _ in range(n_targets))
        self.auprc = nn.ModuleList(BinaryAveragePrecision() for _ in range(n_targets))
        self.logloss = nn.ModuleList(MeanMetric() for _ in range(n_targets))
        self.brier = nn.ModuleList(MeanMetric() for _ in range(n_targets))
        self.positive_rate = nn.ModuleList(MeanMetric() for _ in range(n_targets))
        self.count = SumMetric()

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits, labels = logits.float(), labels.float()
        probs = torch.sigmoid(logits)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        for i in range(labels.shape[1]):
            self.auroc[i].update(probs[:, i], labels[:, i].long())
            self.auprc[i].update(probs[:, i], labels[:, i].long())
            self.logloss[i].update(bce[:, i])
            self.brier[i].update((probs[:, i] - labels[:, i]) ** 2)
            self.positive_rate[i].update(labels[:, i])
        self.count.update(torch.tensor(float(labels.shape[0]), device=labels.device))

    def compute(self, target_names: list[str]) -> dict[str, float]:
        """Macro averages under plain names; per-target values as ``name/<target>`` if >1."""
        out: dict[str, float] = {"n_samples": float(self.count.compute())}
        for name in METRIC_NAMES:
            values = [float(m.compute()) for m in getattr(self, name)]
            out[name] = sum(values) / len(values)
            if len(values) > 1:
                out.update({f"{name}/{t}": v for t, v in zip(target_names, values, strict=True)})
        return out

    def reset(self) -> None:
        for name in METRIC_NAMES:
            for metric in getattr(self, name):
                metric.reset()
        self.count.reset()


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
        unknown_token_rate: float = 0.01,
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
        return self.model(*batch[:-1])

    def _with_unknown_tokens(self, batch: Batch) -> Batch:
        """Replace a few real tokens by the unknown id, so its embedding is trained.

        The vocabulary covers every training token, so without this the unknown id would
        never be seen in training, yet serving and later splits meet unseen values.
        """
        rate = float(self.hparams["unknown_token_rate"])
        if rate <= 0:
            return batch
        event_ids, channel_ids, attribute_ids, numeric, time_features, lengths, labels = batch
        ids = []
        for tokens in (event_ids, channel_ids, attribute_ids):
            drop = (torch.rand(tokens.shape, device=tokens.device) < rate) & (tokens != PAD_ID)
            ids.append(torch.where(drop, torch.full_like(tokens, UNKNOWN_ID), tokens))
        return ids[0], ids[1], ids[2], numeric, time_features, lengths, labels

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        batch = self._with_unknown_tokens(batch)
        logits = self(batch)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), batch[-1])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[-1].shape[0])
        return loss

    def _eval_step(self, split: str, batch: Batch) -> None:
        self.split_metrics[split].update(self(batch), batch[-1])

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
