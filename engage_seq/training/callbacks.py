"""The Lightning callbacks of a training run: best-checkpoint selection, early stopping, the
resumable checkpoint and the learning-rate log, built from plain arguments (no Hydra)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)

RESUME_FILE = "resume.ckpt"


class ResumeCheckpoint(Callback):
    """Writes ``checkpoints/resume.ckpt`` every ``every_n_steps`` optimizer steps and at the end
    of every epoch (after validation), atomically: a kill mid-write leaves the previous one.

    ``engage-train ... resume=true`` (same ``hydra.run.dir``) continues from it, mid-epoch
    included (the data module skips the batches already done).
    """

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path = path
        self.every_n_steps = every_n_steps
        # the step training started from (after a restore); None if no epoch was left to run
        self.start_step: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_step = trainer.global_step

    def _save(self, trainer: L.Trainer) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # full state; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("resume_checkpoint")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0:
            if trainer.fit_loop.epoch_loop._should_accumulate():
                return  # mid-accumulation: the optimizer state would not match the step
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)


@dataclass
class RunCallbacks:
    """The callbacks a run hands its Trainer, and the two it reads back after fitting."""

    checkpoint: ModelCheckpoint
    resume: ResumeCheckpoint
    all: list[Callback]


def make_callbacks(
    checkpoint_dir: Path, monitor: str, mode: str, patience: int, every_n_steps: int
) -> RunCallbacks:
    """``checkpoints/best.ckpt`` on ``monitor``, early stopping on it, ``resume.ckpt`` every
    ``every_n_steps`` steps and each epoch, and the learning rate per step."""
    checkpoint = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    resume = ResumeCheckpoint(checkpoint_dir / RESUME_FILE, every_n_steps)
    callbacks = [
        checkpoint,
        EarlyStopping(monitor=monitor, mode=mode, patience=patience),
        resume,
        LearningRateMonitor(logging_interval="step"),  # the schedule, next to the loss curve
    ]
    return RunCallbacks(checkpoint=checkpoint, resume=resume, all=callbacks)
