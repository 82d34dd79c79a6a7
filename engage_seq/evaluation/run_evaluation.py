"""A finished run folder -> the predictions and metrics of its model and of reference scorers
(baselines, the synthetic data's oracle, sibling runs) on the same validation and test samples:
the numbers behind `engage_seq.reporting.report`.

Everything is recomputed from the run's own files (``config_resolved.yaml``, the best
checkpoint or ``baseline.json``) and the cached samples, on CPU in fp32, through the code that
scored the run in training (`engage_seq.evaluation.predictions`). Baselines go through
`engage_seq.evaluation.baseline_scores.fit_and_score_baseline`, as a ``model=gbm`` run would
(`engage_seq.evaluation.references`); the oracle is `engage_seq.evaluation.oracle`, the other
runs of a sweep `engage_seq.evaluation.siblings`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from engage_seq.common.final_model import refit_setting
from engage_seq.data.cache import PreparedSamples, prepare_samples
from engage_seq.data.encoding import Vocabulary
from engage_seq.data.encoding import next_event_classes as class_names
from engage_seq.data.sequences import Task
from engage_seq.data.tasks import horizon_part, next_event_part
from engage_seq.evaluation.options import ReportOptions
from engage_seq.evaluation.oracle import oracle_scorer
from engage_seq.evaluation.predictions import (
    baseline_run_scorer,
    evaluated_split,
    recorded_mismatch,
    sequence_model_scorer,
    split_base_rates,
)
from engage_seq.evaluation.references import ReferenceCache, reference_baselines
from engage_seq.evaluation.results import EvaluatedSplit, RunEvaluation, Scorer
from engage_seq.evaluation.run_folder import (
    CONFIG_FILE,
    EvaluationError,
    baseline_name,
    is_baseline_config,
    read_config,
    read_metrics,
)
from engage_seq.evaluation.siblings import sibling_runs
from engage_seq.evaluation.training_data import training_data_note
from engage_seq.models.engagement import EngagementModel

log = logging.getLogger(__name__)
EVALUATED_SPLITS = ("val", "test")


def _prepare(cfg: DictConfig, task: Task, cache_dir: str | None) -> PreparedSamples:
    return prepare_samples(
        instantiate(cfg.data.source),
        task,
        instantiate(cfg.data.sampling),
        cache_dir or cfg.cache_dir,
        instantiate(cfg.data.columns),
        instantiate(cfg.data.ingest),
    )


def _describe_source(cfg: DictConfig) -> str:
    source = instantiate(cfg.data.source)
    describe = getattr(source, "describe", None)
    return describe() if callable(describe) else type(source).__name__


def _score_run(
    run_dir: Path,
    cfg: DictConfig,
    task: Task,
    prepared: PreparedSamples,
    splits: dict[str, EvaluatedSplit],
    options: ReportOptions,
    notes: list[str],
) -> tuple[Scorer, EngagementModel | None, Vocabulary, str]:
    """-> the run's own scorer, its model (None for a baseline run), the vocabulary its
    inputs use and the samples it was trained on."""
    if is_baseline_config(cfg):
        horizon = horizon_part(task)
        targets = list(horizon.targets) if horizon is not None else []
        run = baseline_run_scorer(run_dir, cfg, splits, targets)
        return run, None, prepared.fitted_vocabulary, prepared.cache_dir.name
    batch_size = options.batch_size or int(cfg.get("eval_batch_size", 1024))
    return sequence_model_scorer(run_dir, cfg, task, prepared, splits, batch_size, notes)


def _references(
    cfg: DictConfig,
    task: Task,
    prepared: PreparedSamples,
    splits: dict[str, EvaluatedSplit],
    vocabulary: Vocabulary,
    options: ReportOptions,
    skipped: dict[str, str],
    timings: dict[str, float],
) -> list[Scorer]:
    """The reference baselines (refitted on train + validation for test when the run refits),
    then the oracle where it applies (why not, in ``skipped``)."""
    exclude = baseline_name(str(cfg.model._target_)) if is_baseline_config(cfg) else None
    refit = refit_setting(cfg, CONFIG_FILE)  # untrusted: a boolean, or refused
    scorers = reference_baselines(
        options.baselines, task, prepared, splits, vocabulary, exclude, skipped, refit
    )
    timings["baselines"] = sum(s.seconds for s in scorers if s.kind == "baseline")
    if options.oracle and horizon_part(task) is not None:
        oracle = oracle_scorer(cfg, task, splits["test"], options, ReferenceCache(prepared))
        if isinstance(oracle, str):
            skipped["oracle"] = oracle
            log.info("report: oracle skipped: %s", oracle)
        else:
            scorers.append(oracle)
            timings["oracle"] = oracle.seconds
    return scorers


def evaluate_run(
    run_dir: str | Path,
    options: ReportOptions | None = None,
    prepared: PreparedSamples | None = None,
) -> RunEvaluation:
    """Load a finished run and score it and its references on val and test.

    ``prepared`` skips re-reading the samples (training passes its own, same cache entry).
    """
    options = options or ReportOptions()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvaluationError(
            f"{run_dir} is not a folder; pass a run folder written by engage-train"
        )
    timings: dict[str, float] = {}
    started = time.perf_counter()
    cfg = read_config(run_dir)
    task = instantiate(cfg.task)
    if prepared is None:
        prepared = _prepare(cfg, task, options.cache_dir)
    vocabulary = prepared.fitted_vocabulary
    splits = {s: evaluated_split(s, prepared.split(s), task, vocabulary) for s in EVALUATED_SPLITS}
    timings["samples"] = time.perf_counter() - started
    notes: list[str] = []
    skipped: dict[str, str] = {}
    run, model, vocabulary, trained_on = _score_run(
        run_dir, cfg, task, prepared, splits, options, notes
    )
    timings["model"] = run.seconds
    scorers = [run]
    scorers += _references(cfg, task, prepared, splits, vocabulary, options, skipped, timings)
    siblings = sibling_runs(run_dir, trained_on) if options.siblings else []
    recorded = read_metrics(run_dir)
    notes += training_data_note(refit_setting(cfg), recorded, scorers, siblings, model is None)
    if not recorded:
        notes.append("metrics.json is missing: the run did not finish, or was moved without it.")
    else:
        notes += recorded_mismatch(run.metrics, recorded)
    timings["evaluate"] = time.perf_counter() - started
    horizon, next_event = horizon_part(task), next_event_part(task)
    return RunEvaluation(
        run_dir=run_dir,
        task=task,
        targets=tuple(horizon.targets) if horizon is not None else (),
        next_event_classes=class_names(vocabulary) if next_event is not None else [],
        horizon_seconds=horizon.horizon_seconds if horizon is not None else None,
        vocabulary=vocabulary,
        splits=splits,
        scorers=scorers,
        siblings=siblings,
        skipped=skipped,
        notes=notes,
        recorded=recorded,
        model=model,
        data_fingerprint=prepared.cache_dir.name,
        data_description=_describe_source(cfg),
        config=cfg,
        timings={k: round(v, 2) for k, v in timings.items()},
        base_rates=split_base_rates(task, prepared, splits, vocabulary),
    )
