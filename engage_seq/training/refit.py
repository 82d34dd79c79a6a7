"""Refit on the newest labelled data: after the checkpoint and epoch count were chosen on
validation, a fresh model is trained on train + validation for exactly that many epochs, and
it becomes the run's final model (``checkpoints/refit.ckpt``).

Why: the validation cutoffs are the newest labelled window, the one closest to the period the
model will score. Using them only to pick an epoch leaves a model fitted on an older customer
base; under drift that costs ranking and, above all, calibration.

The refit reuses the training split's encoding (vocabulary and numeric scaling fitted on
train), so its artifact reads events exactly as the selected model's does; only the weights
differ. Plain arguments, Lightning, no Hydra (`engage_seq.experiments.refit` wires the config).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from engage_seq.common.errors import EngageSeqError
from engage_seq.training.batches import EncodedSamples, EventDataModule
from engage_seq.training.lit_module import EngagementLitModule

REFIT_FILE = "refit.ckpt"


class RefitError(EngageSeqError, ValueError):
    """The selected checkpoint does not say how many epochs to refit for."""


@dataclass(frozen=True)
class RefitPlan:
    """What the refit does: how many epochs, on how many samples, chosen at which epoch."""

    epochs: int  # the selected checkpoint's epoch + 1
    n_samples: int  # train + validation samples
    selected_epoch: int  # 0-based epoch of best.ckpt

    def metadata(self) -> dict[str, Any]:
        """What the refit checkpoint records about how it was trained."""
        return {
            "refit": True,
            "trained_on": ["train", "val"],
            "epochs": self.epochs,
            "n_samples": self.n_samples,
            "selected_epoch": self.selected_epoch,
        }

    def metrics(self) -> dict[str, float]:
        """The ``train/refit*`` entries of metrics.json."""
        return {
            "train/refit": 1.0,
            "train/refit_epochs": float(self.epochs),
            "train/refit_n_samples": float(self.n_samples),
        }


def refit_epochs(selected: dict[str, Any]) -> int:
    """The number of epochs the selected checkpoint had trained: its 0-based ``epoch`` + 1
    (Lightning saves ``epoch`` as the index of the epoch whose validation chose it)."""
    epoch = selected.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise RefitError(
            f"the selected checkpoint records epoch {epoch!r}, not a count of epochs to refit "
            "for; retrain without training.refit, or from scratch"
        )
    return epoch + 1


def concat_encoded(first: EncodedSamples, second: EncodedSamples) -> EncodedSamples:
    """``first``'s samples, then ``second``'s, in one `EncodedSamples` (same ``max_len`` and
    features: both were encoded with the training vocabulary and scaling)."""
    if first.event_ids.shape[1:] != second.event_ids.shape[1:]:
        raise ValueError(
            f"cannot join encoded splits of widths {first.event_ids.shape[1:]} and "
            f"{second.event_ids.shape[1:]}: encode both with the same max_len and vocabulary"
        )
    # every array of the dataclass, so an input added later (as the aggregates were) is joined too
    fields = [f.name for f in dataclasses.fields(EncodedSamples)]
    joined = {f: np.concatenate([getattr(first, f), getattr(second, f)]) for f in fields}
    return EncodedSamples(**joined)


def refit_datamodule(
    splits: dict[str, EncodedSamples], batch_size: int, eval_batch_size: int, seed: int
) -> EventDataModule:
    """Training batches drawn from train + validation; val/test loaders as before (the refit
    trainer runs no validation: validation is training data now)."""
    return EventDataModule(
        train=concat_encoded(splits["train"], splits["val"]),
        val=splits["val"],
        test=splits["test"],
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
    )


def fit_refit(
    trainer: L.Trainer,
    module: EngagementLitModule,
    datamodule: EventDataModule,
    plan: RefitPlan,
    checkpoint_dir: Path,
) -> Path:
    """Fit ``module`` (fresh, unfitted) for the planned epochs and save ``refit.ckpt`` (same
    format and metadata as ``best.ckpt``, plus ``training``: how it was refitted). The
    trainer must run no validation and keep no checkpoints of its own. Written atomically
    by rank 0; every rank waits for it."""
    if trainer.max_epochs != plan.epochs:
        raise ValueError(f"the refit trainer runs {trainer.max_epochs} epochs, not {plan.epochs}")
    module.metadata = {**module.metadata, "training": plan.metadata()}
    trainer.fit(module, datamodule=datamodule)
    path = checkpoint_dir / REFIT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)  # the format ModelCheckpoint writes
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier("refit_checkpoint")
    return path
