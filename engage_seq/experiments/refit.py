"""``training.refit`` wired from the Hydra config: the sequence-model refit after selection
(`refit_final_model`) and the baseline run's refit (`fit_and_score_baseline_run`).

The selected model (``best.ckpt``) keeps the run's ``val/*`` metrics, which stay held out;
the refit model, trained on train + validation for the selected number of epochs, gives
``test/*`` and is what the run writes as its golden batch, exports and reports
(`engage_seq.common.final_model` answers "which model is final" for every reader).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from engage_seq.common.final_model import BASELINE_REFIT_FILE, refit_setting
from engage_seq.common.io import write_json_atomic
from engage_seq.data.sequences import Task
from engage_seq.evaluation.baseline_scores import fit_and_score_baseline
from engage_seq.training.batches import EncodedSamples, Vocabulary
from engage_seq.training.lit_module import EngagementLitModule
from engage_seq.training.loop import evaluate_best, resolve_precision
from engage_seq.training.refit import RefitPlan, fit_refit, refit_datamodule, refit_epochs

log = logging.getLogger(__name__)


def refit_enabled(cfg: DictConfig) -> bool:
    """``training.refit`` (absent: False; anything but a boolean is refused)."""
    training = cfg.get("training")
    container = {"training": dict(training) if training is not None else None}
    return refit_setting(container, "the training config")


def refit_final_model(
    cfg: DictConfig,
    run_dir: Path,
    splits: dict[str, EncodedSamples],
    selected: dict[str, Any],
    metrics: dict[str, float],
    build_module: Callable[[], EngagementLitModule],
) -> EngagementLitModule:
    """Train a fresh model (``build_module``, same config and seed) on train + validation for
    the selected checkpoint's epochs + 1, save ``refit.ckpt``, and put its ``test/*`` metrics
    and the ``train/refit*`` entries into ``metrics`` (``val/*`` stay the selected model's).
    Returns the refit module: the run's final model from here on."""
    plan = RefitPlan(
        epochs=refit_epochs(selected),
        n_samples=len(splits["train"]) + len(splits["val"]),
        selected_epoch=int(selected["epoch"]),
    )
    log.info(
        "refit: a fresh model on train + validation (%d samples) for %d epochs",
        plan.n_samples,
        plan.epochs,
    )
    L.seed_everything(cfg.seed, workers=True)  # the same initial weights as the first fit
    module = build_module()
    datamodule = refit_datamodule(splits, cfg.batch_size, cfg.eval_batch_size, cfg.seed)
    trainer = _refit_trainer(cfg, run_dir, plan.epochs)
    started = time.perf_counter()
    path = fit_refit(trainer, module, datamodule, plan, run_dir / "checkpoints")
    fit_seconds = time.perf_counter() - started
    final = torch.load(path, map_location="cpu", weights_only=True)
    tested = evaluate_best(
        trainer, module, datamodule, str(path), final, cfg.trainer.accelerator, ("test",)
    )
    metrics.update({k: v for k, v in tested.items() if k.startswith("test/")})
    metrics.update(plan.metrics())
    # not in metrics.json: a timing there would make two identical runs' metrics differ
    log.info("refit: fitted in %.1f s", fit_seconds)
    return module


def _refit_trainer(cfg: DictConfig, run_dir: Path, epochs: int) -> L.Trainer:
    """The run's Trainer settings (devices, strategy, precision, clipping, accumulation) for
    exactly ``epochs`` epochs, with no validation, early stopping or checkpoint callbacks;
    its curves go to ``tensorboard/refit``."""
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name="tensorboard", version="refit", default_hp_metric=False
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=[LearningRateMonitor(logging_interval="step")],
        precision=resolve_precision(cfg.trainer.precision),
        use_distributed_sampler=False,  # EventDataModule shards batches by rank itself
        max_epochs=epochs,
        min_epochs=None,
        limit_val_batches=0,  # validation is training data now: nothing to monitor
        num_sanity_val_steps=0,
        enable_checkpointing=False,  # fit_refit writes refit.ckpt itself
    )
    return trainer


def fit_and_score_baseline_run(
    cfg: DictConfig,
    run_dir: Path,
    task: Task,
    splits: dict[str, Any],
    vocabulary: Vocabulary,
    baseline: Any,
) -> dict[str, float]:
    """A baseline run's fit and metrics; with ``training.refit`` also a fresh baseline of the
    same config refitted on train + validation, whose test metrics replace the first fit's
    and which is saved as ``baseline_refit.json`` (``baseline.json`` keeps the first fit)."""
    if not refit_enabled(cfg):
        return fit_and_score_baseline(baseline, task, splits, vocabulary)
    refit = instantiate(cfg.model)
    metrics = fit_and_score_baseline(baseline, task, splits, vocabulary, refit=refit)
    write_json_atomic(run_dir / BASELINE_REFIT_FILE, refit.to_dict())
    joined = splits["train"].height + splits["val"].height
    metrics.update({"train/refit": 1.0, "train/refit_n_samples": float(joined)})
    log.info(
        "refit: baseline refitted on train + validation; test metrics: %s",
        json.dumps({k: v for k, v in metrics.items() if k.startswith("test/")}),
    )
    return metrics
