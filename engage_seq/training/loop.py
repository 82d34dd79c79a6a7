"""Fitting and evaluating with a Lightning Trainer: precision, resume, the best checkpoint, the
fp32 evaluation of it, and leaving the DDP process group (plain arguments, no Hydra)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from engage_seq.training.batches import EventDataModule
from engage_seq.training.callbacks import RunCallbacks
from engage_seq.training.lit_module import EngagementLitModule

log = logging.getLogger(__name__)


def resolve_precision(precision: str | int) -> str | int:
    """'auto' -> bf16 mixed precision on a GPU that supports it, full fp32 otherwise."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def is_zero_rank() -> bool:
    """True outside DDP and on global rank 0, before any Trainer exists (launchers set RANK,
    or LOCAL_RANK and NODE_RANK as Lightning's own DDP launcher does)."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def fit(
    trainer: L.Trainer,
    module: EngagementLitModule,
    datamodule: EventDataModule,
    callbacks: RunCallbacks,
    resume: bool,
) -> tuple[str | None, float]:
    """Fit, from ``resume.ckpt`` when ``resume`` and it exists; returns (the checkpoint resumed
    from or None, fit seconds)."""
    resume_path = callbacks.resume.path
    ckpt_path = None
    if resume:
        if resume_path.is_file():
            ckpt_path = str(resume_path)
            log.info("resuming from %s", resume_path)
        else:
            log.info("resume=true but %s does not exist: starting from scratch", resume_path)
    fit_started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - fit_started
    if ckpt_path is not None and callbacks.resume.start_step in (None, trainer.global_step):
        log.info(
            "resume=true: this run had already finished training (epoch %d, step %d); its best "
            "checkpoint is evaluated again and the run folder's files rewritten",
            trainer.current_epoch,
            trainer.global_step,
        )
    return ckpt_path, fit_seconds


def leave_process_group(trainer: L.Trainer) -> None:
    """After a DDP run every rank leaves the process group together. The report runs on rank
    0 alone, and torchmetrics syncs its states whenever a group exists, so with the group
    still up rank 0 would wait on ranks that have exited ("Connection closed by peer")."""
    if trainer.world_size > 1 and torch.distributed.is_initialized():
        trainer.strategy.barrier("run_finished")
        torch.distributed.destroy_process_group()


def best_checkpoint(checkpoint: ModelCheckpoint, run_dir: Path, resumed: bool) -> str:
    """The best checkpoint's path. A resumed run that had already finished fits no epoch, so
    Lightning's callback may not know the path: the run folder's ``best.ckpt`` is that file."""
    if checkpoint.best_model_path:
        return checkpoint.best_model_path
    fallback = run_dir / "checkpoints" / "best.ckpt"
    if resumed and fallback.is_file():
        return str(fallback)
    raise FileNotFoundError(
        f"no best checkpoint in {fallback.parent}: training saved none (no validation epoch "
        "ran?); check trainer.limit_val_batches / check_val_every_n_epoch"
    )


def evaluate_best(
    trainer: L.Trainer,
    module: EngagementLitModule,
    datamodule: EventDataModule,
    best_path: str,
    best: dict[str, Any],
    accelerator: str,
    splits: tuple[str, ...] = ("val", "test"),
) -> dict[str, float]:
    """Val/test metrics of the best checkpoint (``best`` is its loaded content); ``splits``
    says which (a refit model is scored on test only: validation was its training data).

    On one device they are computed in fp32 whatever the training precision, so the figures
    describe the exported (fp32) model rather than its bf16-autocast twin. Under DDP the
    training trainer evaluates (its precision), every rank scoring its own share of batches and
    the metric states gathered across ranks.
    """
    if trainer.world_size > 1:
        if "val" in splits:
            trainer.validate(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)
        if "test" in splits:
            trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)
        return dict(module.last_metrics)
    evaluator = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision="32-true",
        logger=trainer.logger,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    module.load_state_dict(best["state_dict"])
    if "val" in splits:
        evaluator.validate(module, datamodule=datamodule, verbose=False)
    if "test" in splits:
        evaluator.test(module, datamodule=datamodule, verbose=False)
    return dict(module.last_metrics)
