"""The configured run: ``train(cfg, run_dir) -> metrics``, the function `engage-train` (and a
notebook, or a test) calls with a composed config.

A run folder gets: ``config_resolved.yaml``, ``data_report.json``, ``checkpoints/best.ckpt``,
``tensorboard/`` event files, ``metrics.json`` (flat ``split/name: value``),
``golden_batch.pt`` (test inputs + the Lightning predictions of the best checkpoint, which
`engage-export` uses as its parity reference), with ``calibration.method`` set
``calibration.json``, with ``training.refit`` ``checkpoints/refit.ckpt`` (the final model;
baseline runs: ``baseline_refit.json``) and, with ``report.enabled``, the run report
(``report.md``, ``figures/``, ``report.json``; `engage_seq.reporting.report`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from engage_seq.common.io import write_json_atomic, write_text_atomic
from engage_seq.common.safe_config import check_targets
from engage_seq.data.cache import prepare_samples
from engage_seq.data.sampling import SPLITS
from engage_seq.data.sequences import TIME_FEATURES, Task
from engage_seq.data.tasks import next_event_part
from engage_seq.evaluation.run_evaluation import ReportOptions
from engage_seq.experiments.config_checks import (
    _check_report_segments,
    _check_selected_metrics,
    _is_baseline,
    _report_options,
    _resolved_yaml,
)
from engage_seq.experiments.hparams import _final_metrics, _flat_hparams
from engage_seq.experiments.hybrid import hybrid_setup, refit_btyd
from engage_seq.experiments.refit import (
    fit_and_score_baseline_run,
    refit_enabled,
    refit_final_model,
)
from engage_seq.metrics.direction import metric_mode
from engage_seq.models.calibration import Calibration
from engage_seq.serving.export import GOLDEN_BATCH, GOLDEN_EVENTS
from engage_seq.training.batches import (
    EncodedSamples,
    EventDataModule,
    Vocabulary,
    encode_samples,
    next_event_classes,
)
from engage_seq.training.calibration import (
    calibrate_best,
    calibration_method,
    rescore,
    write_calibration,
)
from engage_seq.training.callbacks import RunCallbacks, make_callbacks
from engage_seq.training.golden import (
    complete_history_rows,
    write_golden_batch,
    write_golden_events,
)
from engage_seq.training.lit_module import EngagementLitModule
from engage_seq.training.loop import (
    best_checkpoint,
    evaluate_best,
    fit,
    is_zero_rank,
    leave_process_group,
    resolve_precision,
)
from engage_seq.training.metadata import data_metadata, output_names

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, float]:
    """Build (or reuse) samples, fit, evaluate the best checkpoint on val and test.

    Every ``_target_`` is checked first (`engage_seq.common.safe_config`): instantiate runs what a
    YAML names. Checkpoints: the best one is read back with ``weights_only=True``; resume goes
    through Lightning's full load of ``checkpoints/resume.ckpt``, which this run wrote itself
    and is trusted local state (never resume from a file you did not write)."""
    check_targets(cfg)  # before any work: nothing is imported or called from the YAML yet
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    task = instantiate(cfg.task)
    monitor = _check_selected_metrics(cfg, task)  # fail before any work on a bad metric
    report_options = _report_options(cfg)  # and on a typo or bad value in the report block
    _check_report_segments(cfg, report_options)  # and on a segment column the table lacks
    refit_enabled(cfg)  # and on a training.refit that is not true or false
    calibration_method(cfg)  # and on an unknown calibration.method
    if is_zero_rank():
        write_text_atomic(run_dir / "config_resolved.yaml", _resolved_yaml(cfg, task, monitor))
    _set_up_process(cfg)
    prepared, sampling, vocabulary = _prepare(cfg, run_dir, task)
    if _is_baseline(cfg):
        return _train_baseline(cfg, run_dir, task, prepared, vocabulary, started)
    prepare_seconds = time.perf_counter() - started
    return _train_sequence_model(
        cfg, run_dir, task, monitor, report_options, prepared, sampling, prepare_seconds
    )


def _set_up_process(cfg: DictConfig) -> None:
    """Threads, seeds and (on a GPU) matmul precision and deterministic cuBLAS workspaces."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _prepare(cfg: DictConfig, run_dir: Path, task: Task) -> tuple[Any, Any, Vocabulary]:
    source = instantiate(cfg.data.source)
    sampling = instantiate(cfg.data.sampling)
    mapping = instantiate(cfg.data.columns)
    ingest = instantiate(cfg.data.ingest)
    prepared = prepare_samples(source, task, sampling, cfg.cache_dir, mapping, ingest)
    if is_zero_rank():
        write_json_atomic(run_dir / "data_report.json", prepared.report)
    return prepared, sampling, prepared.fitted_vocabulary


def _train_sequence_model(
    cfg: DictConfig,
    run_dir: Path,
    task: Task,
    monitor: str,
    report_options: ReportOptions,
    prepared: Any,
    sampling: Any,
    prepare_seconds: float,
) -> dict[str, float]:
    """Encode, fit, evaluate the best checkpoint, write the run folder's files."""
    model_cfg, aggregate_scaling = hybrid_setup(cfg.model, task, prepared)
    encoded = _encode(prepared, task, sampling.max_len, aggregate_scaling)
    datamodule = EventDataModule(
        **encoded, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size, seed=cfg.seed
    )
    module = _build_module(cfg, task, prepared, sampling.max_len, model_cfg, aggregate_scaling)
    trainer, logger, callbacks = _build_trainer(cfg, run_dir, monitor)
    resumed_from, fit_seconds = fit(trainer, module, datamodule, callbacks, cfg.resume)
    best_path = best_checkpoint(callbacks.checkpoint, run_dir, resumed=resumed_from is not None)
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    metrics = evaluate_best(trainer, module, datamodule, best_path, best, cfg.trainer.accelerator)
    metrics.update(
        {
            "train/n_samples": float(len(encoded["train"])),
            "train/epochs": float(trainer.current_epoch),
            "train/steps": float(trainer.global_step),
            "train/best_epoch": float(best.get("epoch", -1)),
            "train/fit_seconds": round(fit_seconds, 2),
            "train/world_size": float(trainer.world_size),
            "data/prepare_seconds": round(prepare_seconds, 2),
        }
    )

    def fresh_module() -> EngagementLitModule:  # the same config, for training.refit
        refit_cfg = refit_btyd(model_cfg, prepared.split("val"), task, aggregate_scaling)
        return _build_module(cfg, task, prepared, sampling.max_len, refit_cfg, aggregate_scaling)

    module, calibration = _final_model(
        cfg, run_dir, task, module, encoded, best, metrics, fresh_module
    )
    if trainer.is_global_zero:
        _write_outputs(
            run_dir, metrics, module, encoded["test"], prepared, sampling.max_len, calibration
        )
        logger.log_hyperparams(_flat_hparams(cfg), metrics=_final_metrics(metrics))
        log.info("metrics: %s", json.dumps(metrics, indent=1))
    leave_process_group(trainer)
    if trainer.is_global_zero:
        write_run_report(run_dir, report_options, prepared)
    return metrics


def _final_model(
    cfg: DictConfig,
    run_dir: Path,
    task: Task,
    selected: EngagementLitModule,
    encoded: dict[str, EncodedSamples],
    best: dict[str, Any],
    metrics: dict[str, float],
    build_module: Callable[[], EngagementLitModule],
) -> tuple[EngagementLitModule, Calibration | None]:
    """The model the run exports, and its calibration (both optional steps, in this order).

    The calibration (``calibration.method``) is fitted on the validation predictions of the
    ``selected`` checkpoint, the only held-out predictions there are; with ``training.refit`` a
    fresh model trained on train + validation then replaces it and its test metrics are scored
    through that same calibration (an approximation the docs state: the refit's logits are
    close to, not equal to, the selected model's)."""
    calibration = calibrate_best(
        selected.model, encoded, calibration_method(cfg), cfg.eval_batch_size, task.targets, metrics
    )
    if not refit_enabled(cfg):
        return selected, calibration
    final = refit_final_model(cfg, run_dir, encoded, best, metrics, build_module)
    if calibration is not None:
        rescore(
            final.model,
            encoded["test"],
            calibration,
            cfg.eval_batch_size,
            task.targets,
            "test",
            metrics,
        )
    return final, calibration


def _encode(
    prepared: Any, task: Task, max_len: int, aggregate_scaling: dict[str, Any]
) -> dict[str, EncodedSamples]:
    """Every split's samples as model inputs, with the training vocabulary and scaling."""
    return {
        split: encode_samples(
            prepared.split(split),
            prepared.fitted_vocabulary,
            max_len,
            task.label_columns,
            prepared.numeric_scaling,
            aggregate_scaling,
        )
        for split in SPLITS
    }


def _build_trainer(
    cfg: DictConfig, run_dir: Path, monitor: str
) -> tuple[L.Trainer, TensorBoardLogger, RunCallbacks]:
    """The configured Trainer with the run's callbacks and TensorBoard logger."""
    callbacks = make_callbacks(
        run_dir / "checkpoints",
        monitor,
        metric_mode(monitor),
        cfg.patience,
        cfg.checkpoint_every_n_steps,
    )
    logger = _tensorboard(run_dir)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=callbacks.all,
        precision=resolve_precision(cfg.trainer.precision),
        use_distributed_sampler=False,  # EventDataModule shards batches by rank itself
    )
    return trainer, logger, callbacks


def _build_module(
    cfg: DictConfig,
    task: Task,
    prepared: Any,
    max_len: int,
    model_cfg: DictConfig,
    aggregate_scaling: dict[str, Any],
) -> EngagementLitModule:
    """The configured model (``model_cfg``: cfg.model less its aggregates switch), sized to the
    vocabulary, task and aggregates, in its Lightning module with the artifact metadata it
    will carry."""
    vocabulary = prepared.fitted_vocabulary
    next_event = next_event_part(task)
    model = instantiate(
        model_cfg,
        n_event_ids=vocabulary.n_event_ids,
        n_channel_ids=vocabulary.n_channel_ids,
        attribute_sizes=vocabulary.attribute_sizes,
        n_numeric=len(prepared.numeric_scaling),
        n_time_features=len(TIME_FEATURES),
        n_outputs=len(task.targets),
        n_next_classes=len(next_event_classes(vocabulary)) if next_event is not None else 0,
        max_len=max_len,
        n_aggregates=len(aggregate_scaling),
    )
    mapping = _column_mapping(cfg.data.columns)
    metadata = {
        **data_metadata(task, prepared, vocabulary, max_len, mapping, aggregate_scaling),
        "output_names": output_names(task, vocabulary),
    }
    return EngagementLitModule(
        model,
        target_names=list(task.targets),
        unknown_token_rate=cfg.unknown_token_rate,
        metadata=metadata,
        seed=cfg.seed,
        **cfg.optim,
        **cfg.loss,
    )


def _tensorboard(run_dir: Path) -> TensorBoardLogger:
    return TensorBoardLogger(
        save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False
    )


def _write_outputs(
    run_dir: Path,
    metrics: dict[str, float],
    module: EngagementLitModule,
    test: EncodedSamples,
    prepared: Any,
    max_len: int,
    calibration: Calibration | None = None,
) -> None:
    """``metrics.json``, ``calibration.json`` and the golden files export checks parity
    against (rank 0 only)."""
    write_json_atomic(run_dir / "metrics.json", metrics)
    write_calibration(run_dir, calibration)
    test_frame = prepared.split("test")
    complete = complete_history_rows(test_frame, max_len)
    write_golden_batch(module, test, complete, run_dir / GOLDEN_BATCH, calibration)
    write_golden_events(test_frame, complete, run_dir / GOLDEN_EVENTS)


def write_run_report(run_dir: Path, options: ReportOptions, prepared: Any = None) -> Path | None:
    """The run report (`engage_seq.reporting.report`) of a finished run. Never raises: the run is
    done
    and saved, so a report failure is logged with the command that rebuilds it."""
    if not options.enabled:
        return None
    try:
        from engage_seq.reporting.report import write_report

        path = write_report(run_dir, options=options, prepared=prepared)
    except Exception:
        log.exception("run report failed; rebuild it with: engage-evaluate %s", run_dir)
        return None
    log.info("run report: %s", path)
    return path


def _column_mapping(columns: DictConfig) -> dict[str, Any]:
    """The run's column mapping as plain JSON (table column names only, no data)."""
    mapping = instantiate(columns)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(mapping).items()}


def _train_baseline(
    cfg: DictConfig,
    run_dir: Path,
    task: Task,
    prepared: Any,
    vocabulary: Vocabulary,
    started: float,
) -> dict[str, float]:
    """Fit a practitioner's baseline on the same samples and score it with the same metrics."""
    baseline = instantiate(cfg.model)
    splits = {split: prepared.split(split) for split in SPLITS}
    prepare_seconds = time.perf_counter() - started
    fit_started = time.perf_counter()
    metrics = fit_and_score_baseline_run(cfg, run_dir, task, splits, vocabulary, baseline)
    metrics.update(
        {
            "train/n_samples": float(splits["train"].height),
            "train/fit_seconds": round(time.perf_counter() - fit_started, 2),
            "data/prepare_seconds": round(prepare_seconds, 2),
        }
    )
    write_json_atomic(run_dir / "metrics.json", metrics)
    write_json_atomic(run_dir / "baseline.json", baseline.to_dict())
    logger = _tensorboard(run_dir)
    logger.log_hyperparams(_flat_hparams(cfg), metrics=_final_metrics(metrics))
    logger.finalize("success")
    log.info("metrics: %s", json.dumps(metrics, indent=1))
    if _report_options(cfg).enabled:  # baseline runs are the reference rows of other reports
        log.info(
            "run report: not written for a baseline run; engage-evaluate %s writes one", run_dir
        )
    return metrics
