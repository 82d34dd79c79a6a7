"""Reference baselines for a run report: each named baseline (conf/model/<name>.yaml) refitted
on the run's training split (and, when the run refits, on train + validation for test) and
scored on val and test exactly as a baseline run would be, and
the `ReferenceCache` that lets every run of a sweep on the same samples share one fit."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from engage_seq.baselines.registry import BASELINES
from engage_seq.common.io import atomic_path
from engage_seq.common.safe_config import check_targets
from engage_seq.data.cache import PreparedSamples
from engage_seq.data.encoding import Vocabulary
from engage_seq.data.sequences import Task
from engage_seq.data.tasks import horizon_part, next_event_part
from engage_seq.evaluation.results import EvaluatedSplit, Scorer
from engage_seq.evaluation.run_folder import BASELINE_LABELS

log = logging.getLogger(__name__)

# The code behind a cached reference: the baselines, `fit_and_score_baseline`, the metrics,
# the oracle (synthetic and its scorer), the user keys it joins on (ingest), the scorer's
# data and this module.
REFERENCE_CODE = (
    "engage_seq.baselines.frames",
    "engage_seq.baselines.features",
    "engage_seq.baselines.logistic",
    "engage_seq.baselines.horizon",
    "engage_seq.baselines.rfm_logreg",
    "engage_seq.baselines.gbm",
    "engage_seq.baselines.bgnbd",
    "engage_seq.baselines.refit",
    "engage_seq.baselines.next_event",
    "engage_seq.baselines.registry",
    "engage_seq.evaluation.baseline_scores",
    "engage_seq.metrics.scores",
    "engage_seq.synthetic.settings",
    "engage_seq.synthetic.behaviour",
    "engage_seq.synthetic.clocks",
    "engage_seq.synthetic.population",
    "engage_seq.synthetic.sessions",
    "engage_seq.synthetic.events",
    "engage_seq.synthetic.drift",
    "engage_seq.synthetic.generator",
    "engage_seq.synthetic.history",
    "engage_seq.synthetic.grids",
    "engage_seq.synthetic.posterior",
    "engage_seq.synthetic.oracle",
    "engage_seq.data.ingest",
    "engage_seq.evaluation.oracle",
    "engage_seq.evaluation.results",
    __name__,
)


class ReferenceCache:
    """Reference scorers (baselines, oracle) per sample-cache entry, so every run of a sweep
    on the same samples shares one fit. Keyed by the scorer's settings and the code that fits
    and scores it; written atomically (two concurrent runs at worst both fit). Holds
    probabilities and metrics only, no user ids or keys."""

    def __init__(self, prepared: PreparedSamples) -> None:
        self.folder = prepared.cache_dir.parent / "report-references" / prepared.cache_dir.name

    def path(self, name: str, settings: Mapping[str, Any]) -> Path:
        from engage_seq import __version__

        code = hashlib.sha256()
        for module in REFERENCE_CODE:  # read as files: importing train would pull in Lightning
            spec = importlib.util.find_spec(module)
            assert spec is not None and spec.origin is not None, module
            code.update(Path(spec.origin).read_bytes())
        payload = {"settings": settings, "code": code.hexdigest(), "version": __version__}
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return self.folder / f"{name}-{hashlib.sha256(blob).hexdigest()[:16]}.npz"

    def load(self, path: Path) -> Scorer | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                meta = json.loads(str(saved["meta"]))
                scorer = Scorer(meta["name"], meta["label"], meta["kind"], tuple(meta["targets"]))
                scorer.metrics = {k: float(v) for k, v in meta["metrics"].items()}
                for key in saved.files:
                    head, _, split = key.partition("/")
                    if head in ("horizon", "next_event"):
                        getattr(scorer, head)[split] = saved[key]
        except (OSError, ValueError, KeyError) as error:
            log.info("report: cached %s not used (%s)", path.name, error)
            return None
        return scorer

    def save(self, path: Path, scorer: Scorer) -> None:
        meta = {
            "name": scorer.name,
            "label": scorer.label,
            "kind": scorer.kind,
            "targets": list(scorer.targets),
            "metrics": scorer.metrics,
        }
        arrays = {f"horizon/{k}": v for k, v in scorer.horizon.items()}
        arrays |= {f"next_event/{k}": v for k, v in scorer.next_event.items()}
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        except OSError as error:  # a read-only cache only costs the next run a refit
            log.info("report: %s not cached (%s)", scorer.name, error)


def _library_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _baseline_config(name: str) -> DictConfig:
    from engage_seq.common.config_dir import CONF_DIR

    path = Path(CONF_DIR) / "model" / f"{name}.yaml"
    if name not in BASELINES or not path.is_file():
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    config = OmegaConf.load(path)
    assert isinstance(config, DictConfig)
    check_targets(config)  # the report instantiates this file: same allow-list as training
    return config


def _applicable(names: tuple[str, ...], task: Task, exclude: str | None) -> list[str]:
    """The named baselines that predict what ``task`` asks for, but ``exclude`` (the run's
    own baseline); an unknown name is an error."""
    horizon, next_event = horizon_part(task), next_event_part(task)
    wanted = []
    for name in names:
        cls = BASELINES.get(name)
        if cls is None:
            raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
        applies = horizon is not None if cls.task_type == "horizon" else next_event is not None
        if applies and name != exclude:
            wanted.append(name)
    return wanted


def _reference_scorer(
    name: str,
    baseline: Any,
    task: Task,
    splits: dict[str, EvaluatedSplit],
    metrics: dict[str, float],
    refit: Any | None = None,
) -> Scorer:
    """A fitted baseline's scorer: its metrics and its val/test probabilities (test from
    ``refit``, the fit on train + validation, when there is one)."""
    horizon = horizon_part(task)
    targets = tuple(horizon.targets) if baseline.task_type == "horizon" and horizon else ()
    scorer = Scorer(name, BASELINE_LABELS[name], "baseline", targets, metrics=metrics)
    for split_name, split in splits.items():
        model = refit if refit is not None and split_name == "test" else baseline
        probs = np.asarray(model.predict_proba(split.frame), dtype=np.float64)
        store = scorer.horizon if baseline.task_type == "horizon" else scorer.next_event
        store[split_name] = probs
    return scorer


def reference_baselines(
    names: tuple[str, ...],
    task: Task,
    prepared: PreparedSamples,
    splits: dict[str, EvaluatedSplit],
    vocabulary: Vocabulary,
    exclude: str | None,
    skipped: dict[str, str],
    refit: bool = False,
) -> list[Scorer]:
    """Each named baseline (conf/model/<name>.yaml) fitted on the training split and scored on
    val and test exactly as a baseline run would be (or its earlier fit on the same samples,
    from `ReferenceCache`); the task's inapplicable ones are left out quietly, unavailable
    ones (LightGBM missing) with the reason in ``skipped``. With ``refit`` (the run refits),
    test is scored by a second fit on train + validation, as the run's own model is."""
    from engage_seq.evaluation.baseline_scores import fit_and_score_baseline

    cache = ReferenceCache(prepared)
    frames: dict[str, pl.DataFrame] = {}
    out = []
    for name in _applicable(names, task, exclude):
        started = time.perf_counter()
        config = _baseline_config(name)
        settings = {
            "config": OmegaConf.to_container(config),
            "task": list(task.label_columns),
            "lightgbm": _library_version("lightgbm") if name == "gbm" else None,
            "refit": refit,
        }
        if name == "bgnbd":
            settings["scipy"] = _library_version("scipy")
        path = cache.path(name, settings)
        scorer = cache.load(path)
        if scorer is None:
            if not frames:  # the training split is read only when something is fitted
                frames = {"train": prepared.split("train")}
                frames |= {k: s.frame for k, s in splits.items()}
            baseline = instantiate(config)
            refitted = instantiate(config) if refit else None
            try:
                metrics = fit_and_score_baseline(baseline, task, frames, vocabulary, refitted)
            except ImportError as error:  # LightGBM and SciPy are optional extras
                skipped[BASELINE_LABELS[name]] = str(error)
                log.info("report: %s skipped: %s", name, error)
                continue
            scorer = _reference_scorer(name, baseline, task, splits, metrics, refitted)
            cache.save(path, scorer)
            log.info("report: baseline %s fitted in %.1f s", name, time.perf_counter() - started)
        else:
            log.info("report: baseline %s from %s", name, path)
        scorer.seconds = time.perf_counter() - started
        out.append(scorer)
    return out
