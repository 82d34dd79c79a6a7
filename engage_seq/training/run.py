"""`engage-train`: the only Hydra entry point. train(cfg, run_dir) -> metrics.

A run folder gets: ``config_resolved.yaml``, ``data_report.json``, ``checkpoints/best.ckpt``,
``tensorboard/`` event files, ``metrics.json`` (flat ``split/name: value``),
``golden_batch.pt`` (test inputs + the Lightning predictions of the best checkpoint, which
`engage-export` uses as its parity reference) and, with ``report.enabled``, the run report
(``report.md``, ``figures/``, ``report.json``; `engage_seq.reporting.report`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import polars as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, ListConfig, OmegaConf

from engage_seq.baselines import is_baseline_target
from engage_seq.cli.user_errors import (
    VERBOSE_ENV,
    VERBOSE_FLAGS,
    user_error_message,
    wants_traceback,
)
from engage_seq.common.config_dir import CONF_DIR
from engage_seq.common.io import atomic_path, write_json_atomic, write_text_atomic
from engage_seq.common.safe_config import (
    UnsafeConfigError,
    check_targets,
    frozen_trust,
    trust_command_line,
)
from engage_seq.data.cache import prepare_samples
from engage_seq.data.schema import NO_CHANNEL
from engage_seq.data.sequences import (
    FEATURE_DEFINITIONS,
    SPLITS,
    TIME_FEATURES,
    Task,
    horizon_part,
    next_event_part,
)
from engage_seq.evaluation.baseline_scores import fit_and_score_baseline
from engage_seq.evaluation.run_evaluation import ReportOptions
from engage_seq.experiments.hydra_precheck import check_command_line
from engage_seq.metrics.direction import metric_mode
from engage_seq.metrics.scores import (
    HORIZON_METRICS,
    NEXT_EVENT_METRICS,
    TIME_METRICS,
)
from engage_seq.models.engagement import MODEL_INPUTS
from engage_seq.serving.export import GOLDEN_BATCH, GOLDEN_EVENTS
from engage_seq.training.batches import (
    EncodedSamples,
    EventDataModule,
    Vocabulary,
    encode_samples,
    next_event_classes,
)
from engage_seq.training.lit_module import EngagementLitModule

log = logging.getLogger(__name__)
GOLDEN_BATCH_SIZE = 256


def resolve_precision(precision: str | int) -> str | int:
    """'auto' -> bf16 mixed precision on a GPU that supports it, full fp32 otherwise."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def main_metric(task: Task) -> str:
    """The validation metric that selects checkpoints when ``monitor: auto``."""
    return "val/auroc" if horizon_part(task) is not None else "val/nll"


def output_names(task: Task, vocabulary: Vocabulary) -> list[str]:
    """Artifact columns: horizon targets, then ``next_event/<type>`` per next-event class."""
    names = list(task.targets)
    if next_event_part(task) is not None:
        names += [f"next_event/{c}" for c in next_event_classes(vocabulary)]
    return names


def _selected(cfg: DictConfig, key: str, task: Task) -> str:
    """``monitor`` / ``optimized_metric`` resolved: ``auto`` monitors the task's main metric,
    and an ``auto`` optimized_metric follows the monitor."""
    name = str(cfg[key])
    if name != "auto":
        return name
    if key != "monitor":
        return _selected(cfg, "monitor", task)
    preferred = main_metric(task)  # a next-event baseline on a multi-task task has no AUROC
    return preferred if preferred in available_metrics(cfg, task) else "val/nll"


def available_metrics(cfg: DictConfig, task: Task) -> set[str]:
    """The ``val/...`` names this model and task will report (checked before any work, so a
    typo or a metric the run cannot produce fails in seconds, not after training)."""
    horizon, next_event = horizon_part(task), next_event_part(task)
    if _is_baseline(cfg):
        task_type = get_class(cfg.model._target_).task_type
        horizon = horizon if task_type == "horizon" else None
        next_event = next_event if task_type == "next_event" else None
    names: set[str] = set()
    if horizon is not None:
        names |= set(HORIZON_METRICS)
        if len(horizon.targets) > 1:
            names |= {f"{m}/{t}" for m in HORIZON_METRICS for t in horizon.targets}
    if next_event is not None:
        names |= set(NEXT_EVENT_METRICS)
        if not _is_baseline(cfg) and cfg.model.get("time_to_next", False):
            names |= set(TIME_METRICS)
    return {f"val/{name}" for name in names}


def _check_selected_metrics(cfg: DictConfig, task: Task) -> str:
    """Validate ``monitor`` and ``optimized_metric``; returns the resolved monitor."""
    available = available_metrics(cfg, task)
    resolved = {key: _selected(cfg, key, task) for key in ("monitor", "optimized_metric")}
    for key, name in resolved.items():
        metric_mode(name)  # a known metric name with a direction
        if name not in available:
            raise ValueError(
                f"{key}={name!r}: this run (model {cfg.model._target_.rsplit('.', 1)[-1]}, task "
                f"{task.name!r}) does not report it; it reports {sorted(available)}"
            )
    return resolved["monitor"]


def _is_baseline(cfg: DictConfig) -> bool:
    return is_baseline_target(cfg.model.get("_target_", ""))


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


def _prepare(cfg: DictConfig, run_dir: Path, task: Task) -> tuple[Any, Any, Vocabulary]:
    source = instantiate(cfg.data.source)
    sampling = instantiate(cfg.data.sampling)
    mapping = instantiate(cfg.data.columns)
    ingest = instantiate(cfg.data.ingest)
    prepared = prepare_samples(source, task, sampling, cfg.cache_dir, mapping, ingest)
    if _is_zero_rank():
        write_json_atomic(run_dir / "data_report.json", prepared.report)
    return prepared, sampling, prepared.fitted_vocabulary


def _is_zero_rank() -> bool:
    """True outside DDP and on global rank 0, before any Trainer exists (launchers set RANK,
    or LOCAL_RANK and NODE_RANK as Lightning's own DDP launcher does)."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


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
    monitor_mode = metric_mode(monitor)
    if _is_zero_rank():
        write_text_atomic(run_dir / "config_resolved.yaml", _resolved_yaml(cfg, task, monitor))
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    prepared, sampling, vocabulary = _prepare(cfg, run_dir, task)
    if _is_baseline(cfg):
        return _train_baseline(cfg, run_dir, task, prepared, vocabulary, started)
    prepare_seconds = time.perf_counter() - started
    encoded = {
        split: encode_samples(
            prepared.split(split),
            vocabulary,
            sampling.max_len,
            task.label_columns,
            prepared.numeric_scaling,
        )
        for split in SPLITS
    }
    datamodule = EventDataModule(
        **encoded, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size, seed=cfg.seed
    )
    next_event = next_event_part(task)
    model = instantiate(
        cfg.model,
        n_event_ids=vocabulary.n_event_ids,
        n_channel_ids=vocabulary.n_channel_ids,
        attribute_sizes=vocabulary.attribute_sizes,
        n_numeric=len(prepared.numeric_scaling),
        n_time_features=len(TIME_FEATURES),
        n_outputs=len(task.targets),
        n_next_classes=len(next_event_classes(vocabulary)) if next_event is not None else 0,
        max_len=sampling.max_len,
    )
    metadata = {
        **_data_metadata(
            task, prepared, vocabulary, sampling.max_len, _column_mapping(cfg.data.columns)
        ),
        "output_names": output_names(task, vocabulary),
    }
    module = EngagementLitModule(
        model,
        target_names=list(task.targets),
        unknown_token_rate=cfg.unknown_token_rate,
        metadata=metadata,
        seed=cfg.seed,
        **cfg.optim,
        **cfg.loss,
    )

    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode=monitor_mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    resume_path = run_dir / "checkpoints" / "resume.ckpt"
    callbacks = [
        checkpoint,
        EarlyStopping(monitor=monitor, mode=monitor_mode, patience=cfg.patience),
        resume_callback := ResumeCheckpoint(resume_path, cfg.checkpoint_every_n_steps),
        LearningRateMonitor(logging_interval="step"),  # the schedule, next to the loss curve
    ]
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=callbacks,
        precision=resolve_precision(cfg.trainer.precision),
        use_distributed_sampler=False,  # EventDataModule shards batches by rank itself
    )
    ckpt_path = None
    if cfg.resume:
        if resume_path.is_file():
            ckpt_path = str(resume_path)
            log.info("resuming from %s", resume_path)
        else:
            log.info("resume=true but %s does not exist: starting from scratch", resume_path)
    fit_started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - fit_started
    best_path = _best_checkpoint(checkpoint, run_dir, resumed=ckpt_path is not None)
    if ckpt_path is not None and resume_callback.start_step in (None, trainer.global_step):
        log.info(
            "resume=true: this run had already finished training (epoch %d, step %d); its best "
            "checkpoint is evaluated again and the run folder's files rewritten",
            trainer.current_epoch,
            trainer.global_step,
        )
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    metrics = _evaluate_best(cfg, trainer, module, datamodule, best_path, best)
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
    if trainer.is_global_zero:
        write_json_atomic(run_dir / "metrics.json", metrics)
        test_frame = prepared.split("test")
        complete = complete_history_rows(test_frame, sampling.max_len)
        _write_golden_batch(module, encoded["test"], complete, run_dir / GOLDEN_BATCH)
        _write_golden_events(test_frame, complete, run_dir / GOLDEN_EVENTS)
        logger.log_hyperparams(_flat_hparams(cfg), metrics=_final_metrics(metrics))
        log.info("metrics: %s", json.dumps(metrics, indent=1))
    _leave_process_group(trainer)
    if trainer.is_global_zero:
        write_run_report(run_dir, report_options, prepared)
    return metrics


def _leave_process_group(trainer: L.Trainer) -> None:
    """After a DDP run every rank leaves the process group together. The report runs on rank
    0 alone, and torchmetrics syncs its states whenever a group exists, so with the group
    still up rank 0 would wait on ranks that have exited ("Connection closed by peer")."""
    if trainer.world_size > 1 and torch.distributed.is_initialized():
        trainer.strategy.barrier("run_finished")
        torch.distributed.destroy_process_group()


def _best_checkpoint(checkpoint: ModelCheckpoint, run_dir: Path, resumed: bool) -> str:
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


def _report_options(cfg: DictConfig) -> ReportOptions:
    """The ``report:`` block, names and values checked (a wrong baseline name or n_explain=0
    fails here, before training, not in the report after it)."""
    block = cfg.get("report")
    values = OmegaConf.to_container(block, resolve=True) if block is not None else {}
    try:
        return ReportOptions.from_mapping(values)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise ValueError(f"report: {error}") from error


def _check_report_segments(cfg: DictConfig, options: ReportOptions) -> None:
    """The declared (event-table) columns of ``report.segments`` exist in the raw table, and
    no derived segment shares its name with a table column, so a typo or a clash fails
    before training rather than costing the report its fairness section. Only with a report
    (not for baseline runs, which get none), and only for declared columns or a file source:
    reading the schema is free for Parquet and CSV, one generation for the synthetic source
    (whose columns never clash)."""
    if not options.enabled or _is_baseline(cfg):
        return
    from engage_seq.data.ingest import FileEventSource
    from engage_seq.data.schema import EventSchemaError, first_line
    from engage_seq.evaluation.fairness import (
        DERIVED_SEGMENTS,
        check_derived_segments,
        check_segment_columns,
    )

    declared = [s for s in options.segments if s not in DERIVED_SEGMENTS]
    derived = [s for s in options.segments if s in DERIVED_SEGMENTS]
    source = instantiate(cfg.data.source)
    if not declared and not (derived and isinstance(source, FileEventSource)):
        return
    try:
        schema = source.scan().collect_schema()
    except Exception as error:  # an unreadable table is the data step's error to report
        log.info("report.segments not checked before training: %s", first_line(error))
        return
    try:
        check_derived_segments(schema, derived, source.describe())
        check_segment_columns(schema, declared, instantiate(cfg.data.columns), source.describe())
    except EventSchemaError as error:
        raise ValueError(f"report.segments: {error}") from error


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


def _data_metadata(
    task: Task,
    prepared: Any,
    vocabulary: Vocabulary,
    max_len: int,
    column_mapping: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What serving needs to rebuild inputs, and what the run was trained on."""
    horizon, next_event = horizon_part(task), next_event_part(task)
    return {
        "vocabulary": vocabulary.to_dict(),
        "categorical_attributes": vocabulary.attributes,
        "numeric_attributes": list(prepared.numeric_scaling),  # the order of numeric's last axis
        "numeric_scaling": prepared.numeric_scaling,
        "time_features": list(TIME_FEATURES),
        "feature_definitions": FEATURE_DEFINITIONS,
        "missing_category_token": NO_CHANNEL,  # what a null channel/category was read as
        "column_mapping": column_mapping,  # how engage-score reads a raw table like training's
        "max_len": max_len,
        "padding": "right",
        "truncation": "keep_most_recent",
        "task": {
            "type": type(task).__name__,
            "name": task.name,
            "targets": list(task.targets),
            "horizon": horizon.horizon if horizon else None,
            "horizon_seconds": horizon.horizon_seconds if horizon else None,
            "next_event_max_gap": next_event.max_gap if next_event else None,
            "next_event_classes": next_event_classes(vocabulary) if next_event else [],
        },
        "cutoffs": prepared.plan.to_dict(),
        "data_fingerprint": prepared.cache_dir.name,
    }


def _evaluate_best(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: EngagementLitModule,
    datamodule: EventDataModule,
    best_path: str,
    best: dict[str, Any],
) -> dict[str, float]:
    """Val/test metrics of the best checkpoint (``best`` is its loaded content).

    On one device they are computed in fp32 whatever the training precision, so the figures
    describe the exported (fp32) model rather than its bf16-autocast twin. Under DDP the
    training trainer evaluates (its precision), every rank scoring its own share of batches and
    the metric states gathered across ranks.
    """
    if trainer.world_size > 1:
        trainer.validate(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)
        trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)
        return dict(module.last_metrics)
    evaluator = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision="32-true",
        logger=trainer.logger,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    module.load_state_dict(best["state_dict"])
    evaluator.validate(module, datamodule=datamodule, verbose=False)
    evaluator.test(module, datamodule=datamodule, verbose=False)
    return dict(module.last_metrics)


def _write_golden_batch(
    module: EngagementLitModule, test: EncodedSamples, complete: np.ndarray, path: Path
) -> None:
    """Parity reference for export: the module's predictions for the first test samples, and
    for ``complete`` (test samples whose whole history is in their window, whose raw events
    `_write_golden_events` saves), on CPU in fp32 whatever the training device and precision,
    because that is how the artifact is served (a bf16-trained GPU run would otherwise fail
    the 1e-5 parity check)."""
    module = module.cpu().float().eval()
    reference: dict[str, torch.Tensor] = {}
    for prefix, rows in (
        ("", np.arange(min(GOLDEN_BATCH_SIZE, len(test)))),
        ("complete_", complete),
    ):
        if rows.size == 0:
            continue
        batch = test.batch(rows)
        with torch.inference_mode():
            probabilities = module.predict_step(batch, 0)
        reference.update({f"{prefix}{k}": v for k, v in zip(MODEL_INPUTS, batch[:-1], strict=True)})
        reference[f"{prefix}probabilities"] = probabilities.float()
    torch.save(reference, path)


def complete_history_rows(test: pl.DataFrame, max_len: int) -> np.ndarray:
    """Up to GOLDEN_BATCH_SIZE test rows whose whole history before the cutoff fits in
    ``max_len``: their sample lists are everything the raw entry point needs."""
    rows = np.flatnonzero((test["n_history"] <= max_len).to_numpy())
    return rows[:GOLDEN_BATCH_SIZE]


def _write_golden_events(test: pl.DataFrame, rows: np.ndarray, path: Path) -> None:
    """The raw events behind the complete-history golden samples, one row per event;
    ``sample`` = position in ``rows`` (the ``complete_*`` tensors of golden_batch.pt). No user
    id or key is written."""
    golden = test[rows.tolist()].with_row_index("sample")
    per_event = ["ts", "event_type", "channel"]
    per_event += [c for c in golden.columns if c.startswith(("cat_", "num_"))]
    events = golden.select("sample", "cutoff", *per_event).explode(per_event)
    with atomic_path(path) as tmp:
        events.write_parquet(tmp)


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
    metrics = fit_and_score_baseline(baseline, task, splits, vocabulary)
    metrics.update(
        {
            "train/n_samples": float(splits["train"].height),
            "train/fit_seconds": round(time.perf_counter() - fit_started, 2),
            "data/prepare_seconds": round(prepare_seconds, 2),
        }
    )
    write_json_atomic(run_dir / "metrics.json", metrics)
    write_json_atomic(run_dir / "baseline.json", baseline.to_dict())
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False
    )
    logger.log_hyperparams(_flat_hparams(cfg), metrics=_final_metrics(metrics))
    logger.finalize("success")
    log.info("metrics: %s", json.dumps(metrics, indent=1))
    if _report_options(cfg).enabled:  # baseline runs are the reference rows of other reports
        log.info(
            "run report: not written for a baseline run; engage-evaluate %s writes one", run_dir
        )
    return metrics


def _final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Final (best-checkpoint, fp32) metrics for the hparams view, under ``final/`` so they do
    not add a step-0 point to the per-epoch ``val/...`` learning curves."""
    return {f"final/{name}": value for name, value in metrics.items()}


def _resolved_yaml(cfg: DictConfig, task: Task, monitor: str) -> str:
    """The run's config with ``auto`` metric choices replaced by what they resolved to, so
    the sweep report (and a reader) knows what the run was selected and optimised on."""
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    resolved.monitor = monitor
    resolved.optimized_metric = _selected(cfg, "optimized_metric", task)
    return OmegaConf.to_yaml(resolved)


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """Hyperparameters for TensorBoard's hparams view: model, task, optimiser, loss, budget,
    plus, under Hydra, every config-group choice and every command-line override, so whatever
    a sweep varied is a column there."""
    keep = {k: cfg[k] for k in ("model", "task", "optim", "loss", "seed", "batch_size")}
    keep["trainer"] = {"max_epochs": cfg.trainer.max_epochs}
    keep["data"] = {"sampling": {"max_len": cfg.data.sampling.max_len}}
    container = OmegaConf.to_container(OmegaConf.create(keep), resolve=True)
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:
            flat[prefix] = value if isinstance(value, int | float | str | bool) else str(value)

    walk("", container)
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        for group, choice in hydra_cfg.runtime.choices.items():
            if not group.startswith("hydra") and choice is not None:
                flat[f"choice.{group}"] = str(choice)
        for override in hydra_cfg.overrides.task:
            key = str(override).partition("=")[0].lstrip("+~")
            value = OmegaConf.select(cfg, key, default=None)
            if key not in flat and not isinstance(value, DictConfig | type(None)):
                flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


_OPTUNA_DIRECTIONS = {"max": "maximize", "min": "minimize"}


def sweep_direction_problem(direction: Any, metric: str) -> str | None:
    """Why an optimiser sweep's ``direction`` cannot optimise ``metric``, or None if it can.

    ``direction`` as the Optuna sweeper config holds it: a string, the plugin's ``Direction``
    enum (its default, ``minimize``), or a list (one entry per objective; only a single
    objective is checked, the rest is the user's to match).
    """
    if isinstance(direction, list | tuple | ListConfig):
        if len(direction) != 1:
            return None
        direction = direction[0]
    name = str(getattr(direction, "name", direction)).lower()
    wanted = _OPTUNA_DIRECTIONS[metric_mode(metric)]
    if name == wanted:
        return None
    return (
        f"hydra.sweeper.direction={name} but optimized_metric {metric} is better when "
        f"{'higher' if wanted == 'maximize' else 'lower'}: set hydra.sweeper.direction={wanted} "
        "(or choose another optimized_metric)"
    )


def _check_sweep_direction(cfg: DictConfig, task: Task) -> None:
    """An optimiser sweep minimising a metric that is better when higher (or the reverse)
    would search for the worst model; refuse before training."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    direction = HydraConfig.get().sweeper.get("direction")
    if direction is None:
        return  # grid sweeps have no direction
    problem = sweep_direction_problem(direction, _selected(cfg, "optimized_metric", task))
    if problem:
        raise ValueError(problem)


class SweepReportCallback(HydraCallback):
    """Writes the sweep leaderboard when a multirun ends, so ``engage-train -m ...`` goes
    from question to answer in one command (``engage-sweep-report`` rebuilds it by hand)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from engage_seq.experiments.leaderboard import analyse_sweep, winner_line, write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = analyse_sweep(sweep_dir)
            files = write_report(report)
        except (ValueError, FileNotFoundError) as error:  # e.g. runs optimising other metrics
            log.warning("sweep report not written: %s", error)
            return
        except Exception:  # the runs are done and saved: a report bug must not hide that
            log.exception("sweep report failed; rebuild it with engage-sweep-report %s", sweep_dir)
            return
        log.info("%s", winner_line(report))
        log.info("sweep leaderboard: %s", files["markdown"])


def _job(cfg: DictConfig) -> float:
    """Returns the configured ``optimized_metric`` so sweepers (Optuna) can optimise it."""
    # hydra first: its env_set is already in os.environ here, and must be refused before any
    # check that might read the allow-list from there (a submitit job process does).
    check_targets(HydraConfig.get(), prefix="hydra")
    check_targets(cfg)  # this job's values (a sweep's are only known here)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    task = instantiate(cfg.task)
    _check_sweep_direction(cfg, task)
    metrics = train(cfg, run_dir)
    return metrics[_selected(cfg, "optimized_metric", task)]


def _run_job(cfg: DictConfig) -> float:
    """One job, with user errors (a missing column, a data window too short for the horizon,
    a typo'd key) said in one line instead of Hydra's traceback (`engage_seq.cli.user_errors`)."""
    try:
        return _job(cfg)
    except Exception as error:
        message = user_error_message(error)
        if message is None or wants_traceback():
            raise
        _stack_to_log_files(error)
        if HydraConfig.initialized() and HydraConfig.get().mode != RunMode.RUN:
            # A multirun goes on: Hydra reports the job, Optuna marks the trial failed and
            # continues, and the sweep report still runs. Exiting here would end them all.
            raise
        print(f"engage-train: error: {message}", file=sys.stderr)
        sys.exit(2)


def _stack_to_log_files(error: BaseException) -> None:
    """Write the stack of a user error to the run's log file (train.log) and nowhere else: the
    console gets one line, and whoever later debugs the run finds the whole story in its
    folder. Handed straight to the file handlers, so the level needs no lowering."""
    record = log.makeRecord(
        log.name,
        logging.ERROR,
        __file__,
        0,
        "engage-train stopped by %s (the one-line message went to the console)",
        (type(error).__name__,),
        (type(error), error, error.__traceback__),
    )
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)
        logger = logger.parent if logger.propagate else None


_hydra_main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")(_run_job)


def main() -> None:
    """engage-train. The command line is composed and checked (`safe_config`) before Hydra
    runs: Hydra instantiates ``hydra.callbacks`` and configures logging from the config before
    `_hydra_main` (and any check in it) starts."""
    argv = sys.argv[1:]
    if any(flag in argv for flag in VERBOSE_FLAGS):  # ours, not Hydra's: taken off argv
        os.environ[VERBOSE_ENV] = "1"
        argv = [a for a in argv if a not in VERBOSE_FLAGS]
        sys.argv = [sys.argv[0], *argv]
    with ExitStack() as stack:
        try:
            trust_command_line(argv)  # allowed_targets=[...] typed here, never from a YAML
            stack.enter_context(frozen_trust())  # as it is now: a job's env_set cannot extend it
            task_function = getattr(_hydra_main, "__wrapped__", _hydra_main)
            check_command_line(argv, CONF_DIR, "train", task_function)
        except (UnsafeConfigError, ValueError) as error:
            print(f"engage-train: error: {error}", file=sys.stderr)
            sys.exit(2)
        _hydra_main()


if __name__ == "__main__":
    main()
