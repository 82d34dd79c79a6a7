"""A training config's choices checked before any work: the selected metrics, the report
block and its segments, an optimiser sweep's direction; and the config as the run resolved it.

A typo or a metric the run cannot produce fails in seconds, not after training.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from engage_seq.baselines import is_baseline_target
from engage_seq.data.sequences import Task
from engage_seq.data.tasks import horizon_part, next_event_part
from engage_seq.evaluation.run_evaluation import ReportOptions
from engage_seq.metrics.direction import metric_mode
from engage_seq.metrics.scores import (
    HORIZON_METRICS,
    NEXT_EVENT_METRICS,
    TIME_METRICS,
)

log = logging.getLogger(__name__)


def main_metric(task: Task) -> str:
    """The validation metric that selects checkpoints when ``monitor: auto``."""
    return "val/auroc" if horizon_part(task) is not None else "val/nll"


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
    from engage_seq.evaluation.segments import (
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


def _resolved_yaml(cfg: DictConfig, task: Task, monitor: str) -> str:
    """The run's config with ``auto`` metric choices replaced by what they resolved to, so
    the sweep report (and a reader) knows what the run was selected and optimised on."""
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    resolved.monitor = monitor
    resolved.optimized_metric = _selected(cfg, "optimized_metric", task)
    return OmegaConf.to_yaml(resolved)


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
