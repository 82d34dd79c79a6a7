"""A finished run folder -> the predictions and metrics of its model and of reference scorers
(baselines, the synthetic data's oracle, sibling runs) on the same validation and test samples:
the numbers behind `engage_seq.reporting.report`.

Everything is recomputed from the run's own files (``config_resolved.yaml``, the best
checkpoint or ``baseline.json``) and the cached samples, on CPU in fp32, through the code that
scored the run in training: the model's batches are the evaluation batches training used
(length-sorted, ``eval_batch_size``) fed to the same torchmetrics states, so a report's model
figures equal ``metrics.json`` (ties in lift@10% are broken by that batch order too). Baselines
go through `engage_seq.evaluation.baseline_scores.fit_and_score_baseline`, as a ``model=gbm``
run would.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from engage_seq.baselines import BASELINES, is_baseline_target
from engage_seq.common.errors import EngageSeqError
from engage_seq.common.io import atomic_path
from engage_seq.common.safe_config import UnsafeConfigError, check_targets, load_untrusted_config
from engage_seq.data.cache import PreparedSamples, cache_key, prepare_samples
from engage_seq.data.encoding import (
    EncodedSamples,
    Vocabulary,
    encode_samples,
    label_expr,
    numeric_scaling_from_metadata,
)
from engage_seq.data.encoding import next_event_classes as class_names
from engage_seq.data.ingest import user_keys
from engage_seq.data.sequences import Task, horizon_part, next_event_part
from engage_seq.metrics.scores import HorizonMetrics, NextEventMetrics, score_probabilities
from engage_seq.models.engagement import EngagementModel
from engage_seq.serving.export import ExportError, find_checkpoint, load_model
from engage_seq.training.batches import LengthBucketBatchSampler

log = logging.getLogger(__name__)
EVALUATED_SPLITS = ("val", "test")
CONFIG_FILE = "config_resolved.yaml"
ENCODER_LABELS = {"lstm": "LSTM", "gru": "GRU", "transformer": "Transformer"}
BASELINE_LABELS = {  # no parentheses: labels sit inside sentences and legends
    "rfm_logreg": "RFM logistic regression",
    "gbm": "GBM on RFM aggregates",
    "markov": "Markov chain on the last event",
    "most_frequent": "most frequent next event",
}
ORACLE_LABEL = "oracle, best possible given each user's history"


class EvaluationError(EngageSeqError, RuntimeError):
    """The folder is not a finished run that can be evaluated (the message says what to do)."""


@dataclass(frozen=True)
class ReportOptions:
    """What a run report contains; the ``report:`` block of conf/train.yaml, or flags of
    ``engage-evaluate``. Unknown keys are an error, so a typo does not silently do nothing."""

    enabled: bool = True
    # reference baselines, refitted on the run's training split; those the task cannot use
    # are left out (gbm also when LightGBM is not installed, with the reason in the report)
    baselines: tuple[str, ...] = ("rfm_logreg", "gbm", "markov", "most_frequent")
    oracle: bool = True  # built-in synthetic data and a purchase target only
    oracle_replicates: int = 256  # Monte Carlo paths per user (~7 s for 25k users on 2 cores)
    oracle_max_users: int = 500_000  # user-cutoffs above this: skipped (cost grows linearly)
    siblings: bool = True  # list the other runs of the same multirun on the same samples
    explain: bool = True  # the "what drives the scores" section (engage_seq.evaluation.explain)
    n_explain: int = 2000
    # fairness section: derived (history_length, last_channel) or event-table columns; () = off
    segments: tuple[str, ...] = ("history_length", "last_channel")
    tensorboard: bool = True
    cache_dir: str | None = None  # None: the run's own cache_dir
    batch_size: int | None = None  # None: the run's eval_batch_size

    def __post_init__(self) -> None:
        """Values checked here, so a bad ``report:`` block fails before training, not after."""
        for key in ("baselines", "segments"):
            value = getattr(self, key)
            if isinstance(value, list):  # frozen: a list from Python code becomes a tuple
                object.__setattr__(self, key, value := tuple(value))
            if not isinstance(value, tuple) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                raise ValueError(
                    f"{key} must be a list of names (strings), got {value!r}; e.g. "
                    f"{key}: [{', '.join(getattr(ReportOptions, key))}]"
                )
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"baselines {unknown} unknown; valid names: {sorted(BASELINES)}")
        twice = sorted({s for s in self.segments if self.segments.count(s) > 1})
        if twice:
            raise ValueError(f"segments {twice} listed twice; name each segment once")
        for key, low in (("n_explain", 1), ("oracle_replicates", 1), ("oracle_max_users", 0)):
            _check_int(key, getattr(self, key), low)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1, "or null for eval_batch_size")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ReportOptions:
        """From a ``report:`` block (YAML lists become tuples; a bare string of names is read
        as comma-separated, not as a list of letters)."""
        values = dict(values or {})
        for key in ("enabled", "oracle", "siblings", "explain", "tensorboard"):
            if isinstance(values.get(key), str):  # e.g. from an environment variable
                values[key] = values[key].strip().lower() in ("1", "true", "yes", "on")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown report options {unknown}; known: {sorted(known)}")
        for key in ("baselines", "segments"):
            if key not in values:
                continue
            names = values[key]
            if isinstance(names, str):
                names = [n.strip() for n in names.split(",") if n.strip()]
            values[key] = tuple(names or ())
        return cls(**values)


def _check_int(key: str, value: Any, low: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        suffix = f" {hint}" if hint else ""
        raise ValueError(f"{key} must be an integer >= {low}{suffix}, got {value!r}")


def options_from_config(cfg: DictConfig) -> ReportOptions:
    """The options of a run config's ``report:`` block; `ReportOptions` defaults for a run
    trained before the block existed. Raises `EvaluationError` naming the bad setting."""
    block = cfg.get("report")
    values = OmegaConf.to_container(block, resolve=True) if block is not None else {}
    if not isinstance(values, dict):
        raise EvaluationError(f"report in {CONFIG_FILE} is not a mapping: {values!r}")
    try:
        return ReportOptions.from_mapping({str(k): v for k, v in values.items()})
    except ValueError as error:
        raise EvaluationError(f"report block of {CONFIG_FILE}: {error}") from error


def run_report_options(run_dir: str | Path) -> ReportOptions:
    """The ``report:`` block the run was trained with, so `engage-evaluate RUN` rebuilds the
    report training wrote (flags then override single settings)."""
    return options_from_config(read_config(Path(run_dir)))


@dataclass
class EvaluatedSplit:
    """One split's samples and labels; every scorer's arrays follow ``frame``'s row order."""

    name: str
    frame: pl.DataFrame
    horizon_labels: np.ndarray  # (N, L) float64 0/1, L = horizon targets (may be 0)
    next_classes: np.ndarray  # (N,) int64 next-event class, -1 = none (masked)
    cutoffs: tuple[int, ...]  # epoch seconds UTC
    encoded: EncodedSamples | None = None  # model input (sequence-model runs only)

    def __len__(self) -> int:
        return self.frame.height


@dataclass
class Scorer:
    """One row of the comparison: the run's model, a baseline or the oracle."""

    name: str  # short id: "lstm", "gbm", "oracle"
    label: str  # what a reader sees
    kind: str  # "model" | "baseline" | "oracle"
    targets: tuple[str, ...]  # horizon targets it predicts (the oracle: purchase only)
    horizon: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, len(targets))
    next_event: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, C)
    metrics: dict[str, float] = field(default_factory=dict)  # "split/name", as metrics.json
    seconds: float = 0.0


@dataclass(frozen=True)
class SiblingRun:
    """Another run of the same multirun on the same samples (metrics from its metrics.json)."""

    name: str
    label: str
    metrics: dict[str, float]


@dataclass
class RunEvaluation:
    run_dir: Path
    task: Task
    targets: tuple[str, ...]  # horizon targets, () for next_event tasks
    next_event_classes: list[str]  # () without a next-event part
    horizon_seconds: int | None
    vocabulary: Vocabulary
    splits: dict[str, EvaluatedSplit]
    scorers: list[Scorer]  # [0]: the run's own model
    siblings: list[SiblingRun]
    skipped: dict[str, str]  # reference -> why it is not in the report
    notes: list[str]  # caveats a reader must see (fingerprint mismatch, ...)
    recorded: dict[str, float]  # the run's metrics.json ({} if absent)
    model: EngagementModel | None  # None for baseline runs
    data_fingerprint: str
    data_description: str
    config: DictConfig
    timings: dict[str, float]

    @property
    def run(self) -> Scorer:
        return self.scorers[0]


def model_label(model_cfg: Mapping[str, Any]) -> str:
    """'LSTM, hidden 64', 'Transformer, 2 layers × 64', 'GBM on RFM aggregates'."""
    target = str(model_cfg.get("_target_", ""))
    if is_baseline_target(target):
        name = baseline_name(target)
        return BASELINE_LABELS.get(name, name)
    encoder = str(model_cfg.get("encoder", "model"))
    hidden, layers = model_cfg.get("hidden"), int(model_cfg.get("num_layers", 1) or 1)
    size = f"{layers} layers × {hidden}" if layers > 1 else f"hidden {hidden}"
    return f"{ENCODER_LABELS.get(encoder, encoder)}, {size}"


def baseline_name(target: str) -> str:
    """'engage_seq.baselines.GradientBoostedTrees' -> 'gbm'."""
    cls_name = target.rsplit(".", 1)[-1]
    for name, cls in BASELINES.items():
        if cls.__name__ == cls_name:
            return name
    return cls_name


def read_config(run_dir: Path) -> DictConfig:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise EvaluationError(
            f"no {CONFIG_FILE} in {run_dir}: pass a run folder written by engage-train"
        )
    # Untrusted input (a run folder may come from anyone): size/alias limits before parsing,
    # then every _target_ checked against the defaults and the person's own allow-list.
    config = OmegaConf.create(load_untrusted_config(path))
    assert isinstance(config, DictConfig)
    return config


def _read_metrics(run_dir: Path) -> dict[str, float]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    return {k: float(v) for k, v in json.loads(path.read_text()).items()}


def _prepare(cfg: DictConfig, task: Task, cache_dir: str | None) -> PreparedSamples:
    return prepare_samples(
        instantiate(cfg.data.source),
        task,
        instantiate(cfg.data.sampling),
        cache_dir or cfg.cache_dir,
        instantiate(cfg.data.columns),
        instantiate(cfg.data.ingest),
    )


def _split(name: str, frame: pl.DataFrame, task: Task, vocabulary: Vocabulary) -> EvaluatedSplit:
    horizon, next_event = horizon_part(task), next_event_part(task)
    columns = horizon.label_columns if horizon is not None else ()
    labels = frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()
    if next_event is not None:
        classes = frame.select(label_expr("label_next_event", vocabulary)).to_series()
        next_classes = classes.cast(pl.Int64).to_numpy()
    else:
        next_classes = np.full(frame.height, -1, dtype=np.int64)
    cutoffs = tuple(sorted(frame["cutoff"].unique().to_list()))
    return EvaluatedSplit(
        name, frame, labels.reshape(frame.height, len(columns)), next_classes, cutoffs
    )


def evaluation_batches(encoded: EncodedSamples, batch_size: int) -> list[np.ndarray]:
    """Row indices of the batches training evaluated this split in (single process)."""
    return list(LengthBucketBatchSampler(encoded.lengths, batch_size, shuffle=False))


def score_model(
    model: EngagementModel, encoded: EncodedSamples, batch_size: int, targets: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """-> horizon probabilities (N, L), next-event probabilities (N, C), metrics (unprefixed).

    CPU, fp32, `torch.inference_mode`, whole batches; the metric states are updated batch by
    batch as `EngagementLitModule` does, and combined in its order (next event, then horizon).
    """
    model = model.cpu().float().eval()
    n = len(encoded)
    n_targets, n_classes = model.n_outputs, model.n_next_classes
    horizon_probs = np.zeros((n, n_targets))
    next_probs = np.zeros((n, n_classes))
    horizon_metric = HorizonMetrics(targets) if n_targets else None
    next_metric = NextEventMetrics(n_classes, model.n_time_outputs > 0) if n_classes else None
    with torch.inference_mode():
        for rows in evaluation_batches(encoded, batch_size):
            batch = encoded.batch(rows)
            raw = model(*batch[:-1]).float()
            labels = batch[-1].float()
            horizon_logits, next_logits, time_params = model.split_outputs(raw)
            probs = model.probabilities(raw).double().numpy()
            horizon_probs[rows] = probs[:, :n_targets]
            next_probs[rows] = probs[:, n_targets:]
            if horizon_metric is not None:
                horizon_metric.update(horizon_logits, labels[:, :n_targets])
            if next_metric is not None:
                classes = labels[:, n_targets].long()
                hours = labels[:, n_targets + 1]
                has = classes >= 0
                next_metric.update(next_logits[has], classes[has], time_params[has], hours[has])
    values: dict[str, float] = {}
    if next_metric is not None:
        values.update(next_metric.compute())
    if horizon_metric is not None:
        values.update(horizon_metric.compute())
    return horizon_probs, next_probs, values


def score_predictions(
    targets: list[str],
    split: EvaluatedSplit,
    horizon_probs: np.ndarray | None,
    next_probs: np.ndarray | None,
) -> dict[str, float]:
    """Metrics of ready-made probabilities, scored as `fit_and_score_baseline` scores them."""
    values: dict[str, float] = {}
    if next_probs is not None and next_probs.size:
        keep = split.next_classes >= 0
        values.update(
            score_probabilities(
                [],
                next_probs=torch.tensor(next_probs[keep]),
                next_classes=torch.tensor(split.next_classes[keep]),
            )
        )
    if horizon_probs is not None and horizon_probs.size:
        values.update(
            score_probabilities(
                targets, torch.tensor(horizon_probs), torch.tensor(split.horizon_labels)
            )
        )
    return values


def _prefixed(split: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{split}/{k}": float(v) for k, v in values.items()}


def _sequence_model_scorer(
    run_dir: Path,
    cfg: DictConfig,
    task: Task,
    prepared: PreparedSamples,
    splits: dict[str, EvaluatedSplit],
    batch_size: int,
    notes: list[str],
) -> tuple[Scorer, EngagementModel, Vocabulary, str]:
    """-> the model's scorer, the model, its vocabulary and the samples it was trained on."""
    try:
        model, meta = load_model(find_checkpoint(run_dir))
    except ExportError as error:
        raise EvaluationError(str(error)) from error
    trained_on = str(meta.get("data_fingerprint") or prepared.cache_dir.name)
    if trained_on != prepared.cache_dir.name:
        notes.append(
            f"The samples were rebuilt ({prepared.cache_dir.name}) and differ from the ones the "
            f"model was trained and scored on ({trained_on}): code or data changed since "
            "training, so these figures need not equal metrics.json."
        )
    vocabulary = Vocabulary.from_metadata(meta)  # the model's, not re-fitted
    targets = list(meta["target_names"])
    scorer = Scorer(
        name=str(cfg.model.get("encoder", "model")),
        label=model_label(cfg.model),
        kind="model",
        targets=tuple(targets),
    )
    started = time.perf_counter()
    for name, split in splits.items():
        split.encoded = encode_samples(
            split.frame,
            vocabulary,
            int(meta["max_len"]),
            task.label_columns,
            numeric_scaling_from_metadata(meta),
        )
        horizon, next_event, values = score_model(model, split.encoded, batch_size, targets)
        scorer.horizon[name], scorer.next_event[name] = horizon, next_event
        scorer.metrics.update(_prefixed(name, values))
    scorer.seconds = time.perf_counter() - started
    return scorer, model, vocabulary, trained_on


def _baseline_run_scorer(
    run_dir: Path, cfg: DictConfig, splits: dict[str, EvaluatedSplit], targets: list[str]
) -> Scorer:
    """A baseline run's own fitted baseline (baseline.json), not a refit."""
    name = baseline_name(str(cfg.model._target_))
    path = run_dir / "baseline.json"
    if not path.is_file():
        raise EvaluationError(f"{run_dir} is a baseline run without {path.name}: train it again")
    started = time.perf_counter()
    baseline = BASELINES[name].from_dict(json.loads(path.read_text()))
    scorer = Scorer(name, model_label(cfg.model), "model", tuple(targets))
    for split_name, split in splits.items():
        probs = np.asarray(baseline.predict_proba(split.frame), dtype=np.float64)
        if baseline.task_type == "horizon":
            scorer.horizon[split_name] = probs
            values = score_predictions(targets, split, probs, None)
        else:
            scorer.next_event[split_name] = probs
            values = score_predictions([], split, None, probs)
        scorer.metrics.update(_prefixed(split_name, values))
    scorer.seconds = time.perf_counter() - started
    return scorer


def _baseline_config(name: str) -> DictConfig:
    from engage_seq.common.config_dir import CONF_DIR

    path = Path(CONF_DIR) / "model" / f"{name}.yaml"
    if name not in BASELINES or not path.is_file():
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    config = OmegaConf.load(path)
    assert isinstance(config, DictConfig)
    check_targets(config)  # the report instantiates the run's data source: same rule as training
    return config


# The code behind a cached reference: the baselines, `fit_and_score_baseline`, the
# metrics, the oracle (synthetic), the user keys it joins on (ingest), and this module.
REFERENCE_CODE = (
    "engage_seq.baselines.frames",
    "engage_seq.baselines.features",
    "engage_seq.baselines.logistic",
    "engage_seq.baselines.horizon",
    "engage_seq.baselines.rfm_logreg",
    "engage_seq.baselines.gbm",
    "engage_seq.baselines.next_event",
    "engage_seq.baselines.registry",
    "engage_seq.evaluation.baseline_scores",
    "engage_seq.metrics.scores",
    "engage_seq.synthetic.generator",
    "engage_seq.data.ingest",
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


def reference_baselines(
    names: tuple[str, ...],
    task: Task,
    prepared: PreparedSamples,
    splits: dict[str, EvaluatedSplit],
    vocabulary: Vocabulary,
    exclude: str | None,
    skipped: dict[str, str],
) -> list[Scorer]:
    """Each named baseline (conf/model/<name>.yaml) fitted on the training split and scored on
    val and test exactly as a baseline run would be (or its earlier fit on the same samples,
    from `ReferenceCache`); the task's inapplicable ones are left out quietly, unavailable
    ones (LightGBM missing) with the reason in ``skipped``."""
    from engage_seq.evaluation.baseline_scores import fit_and_score_baseline

    horizon, next_event = horizon_part(task), next_event_part(task)
    wanted = []
    for name in names:
        cls = BASELINES.get(name)
        if cls is None:
            raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
        applies = horizon is not None if cls.task_type == "horizon" else next_event is not None
        if applies and name != exclude:
            wanted.append(name)
    cache = ReferenceCache(prepared)
    frames: dict[str, pl.DataFrame] = {}
    out = []
    for name in wanted:
        started = time.perf_counter()
        config = _baseline_config(name)
        settings = {
            "config": OmegaConf.to_container(config),
            "task": list(task.label_columns),
            "lightgbm": _library_version("lightgbm") if name == "gbm" else None,
        }
        path = cache.path(name, settings)
        scorer = cache.load(path)
        if scorer is None:
            if not frames:  # the training split is read only when something is fitted
                frames = {"train": prepared.split("train")}
                frames |= {k: s.frame for k, s in splits.items()}
            baseline = instantiate(config)
            try:
                metrics = fit_and_score_baseline(baseline, task, frames, vocabulary)
            except ImportError as error:  # LightGBM is an optional extra
                skipped[BASELINE_LABELS[name]] = str(error)
                log.info("report: %s skipped: %s", name, error)
                continue
            targets = tuple(horizon.targets) if baseline.task_type == "horizon" and horizon else ()
            scorer = Scorer(name, BASELINE_LABELS[name], "baseline", targets, metrics=metrics)
            for split_name, split in splits.items():
                probs = np.asarray(baseline.predict_proba(split.frame), dtype=np.float64)
                store = scorer.horizon if baseline.task_type == "horizon" else scorer.next_event
                store[split_name] = probs
            cache.save(path, scorer)
            log.info("report: baseline %s fitted in %.1f s", name, time.perf_counter() - started)
        else:
            log.info("report: baseline %s from %s", name, path)
        scorer.seconds = time.perf_counter() - started
        out.append(scorer)
    return out


def oracle_scorer(
    cfg: DictConfig,
    task: Task,
    split: EvaluatedSplit,
    options: ReportOptions,
    cache: ReferenceCache | None = None,
) -> Scorer | str:
    """The synthetic generator's Bayes-optimal P(purchase) given each user's history
    (`engage_seq.synthetic.generator.purchase_probability`) on ``split``, or why it does not
    apply."""
    from engage_seq.synthetic.generator import SyntheticEventSource, purchase_probability

    source = instantiate(cfg.data.source)
    horizon = horizon_part(task)
    if not isinstance(source, SyntheticEventSource):
        return "the oracle exists only for the built-in synthetic data"
    if horizon is None or "purchase" not in horizon.targets:
        return "the oracle forecasts purchases; this task has no purchase target"
    drift = source.drift_epoch
    if drift is not None and max(split.cutoffs) + horizon.horizon_seconds > drift:
        return (
            "the test window reaches past the generator's drift_start "
            f"({source.drift_start}), where the oracle has no ground truth"
        )
    user_cutoffs = source.n_users * len(split.cutoffs)
    if user_cutoffs > options.oracle_max_users:
        return (
            f"{user_cutoffs:,} user-cutoffs exceed report.oracle_max_users="
            f"{options.oracle_max_users:,} (about 0.3 ms each at 256 replicates)"
        )
    started = time.perf_counter()
    settings = {"replicates": options.oracle_replicates, "split": split.name, "task": str(task)}
    path = cache.path("oracle", settings) if cache is not None else None
    cached = cache.load(path) if cache is not None and path is not None else None
    if cached is not None:
        cached.seconds = time.perf_counter() - started
        log.info("report: oracle from %s", path)
        return cached
    salt_env = str(cfg.data.ingest.get("salt_env", "ENGAGE_SEQ_SALT"))
    parts = []
    for cutoff in split.cutoffs:
        truth = purchase_probability(
            source, int(cutoff), horizon.horizon_seconds, replicates=options.oracle_replicates
        )
        parts.append(
            pl.DataFrame(
                {
                    "user_key": user_keys(truth["user_id"], salt_env),
                    "cutoff": pl.Series([cutoff] * truth.height, dtype=pl.Int64),
                    "probability": truth["probability"],
                }
            )
        )  # raw user ids stop here: only keys and probabilities go on
    keys = split.frame.select("user_key", pl.col("cutoff").cast(pl.Int64))
    joined = keys.join(
        pl.concat(parts), on=["user_key", "cutoff"], how="left", maintain_order="left"
    )
    missing = joined["probability"].null_count()
    if missing:
        return f"the oracle has no probability for {missing} of {split.frame.height} samples"
    probs = joined["probability"].to_numpy().reshape(-1, 1)
    column = list(horizon.targets).index("purchase")
    labels = split.horizon_labels[:, column : column + 1]
    values = score_probabilities(["purchase"], torch.tensor(probs), torch.tensor(labels))
    scorer = Scorer("oracle", ORACLE_LABEL, "oracle", ("purchase",))
    scorer.horizon[split.name] = probs
    scorer.metrics = _prefixed(split.name, values)
    scorer.seconds = time.perf_counter() - started
    if cache is not None and path is not None:
        cache.save(path, scorer)
    log.info("report: oracle scored %d samples in %.1f s", len(split), scorer.seconds)
    return scorer


def _sample_key(cfg: DictConfig, task: Task) -> str:
    return "samples-" + cache_key(
        instantiate(cfg.data.source),
        instantiate(cfg.data.columns),
        task,
        instantiate(cfg.data.sampling),
        instantiate(cfg.data.ingest),
    )


def recorded_fingerprint(run_dir: Path, cfg: DictConfig) -> str:
    """The samples a run was trained on: the fingerprint its checkpoint recorded, or (baseline
    runs record none) the cache key its configuration has with the current code."""
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    if checkpoint.is_file():
        meta = torch.load(checkpoint, map_location="cpu", weights_only=True).get("engage_seq", {})
        if meta.get("data_fingerprint"):
            return str(meta["data_fingerprint"])
    return _sample_key(cfg, instantiate(cfg.task))


def sibling_runs(run_dir: Path, fingerprint: str) -> list[SiblingRun]:
    """Other finished runs of the same Hydra multirun (a folder with ``multirun.yaml``) that
    were trained on the same samples (`recorded_fingerprint`), hence the same val/test."""
    sweep = run_dir.parent
    if not (sweep / "multirun.yaml").is_file():
        return []
    out = []
    for other in sorted(p for p in sweep.iterdir() if p.is_dir() and p != run_dir):
        if not (other / "metrics.json").is_file() or not (other / CONFIG_FILE).is_file():
            continue
        try:
            cfg = read_config(other)
            same = recorded_fingerprint(other, cfg) == fingerprint
            metrics = _read_metrics(other)
        except UnsafeConfigError as error:  # refused before anything in it was instantiated
            log.warning("report: sibling %s skipped, its config is refused: %s", other.name, error)
            continue
        except Exception as error:  # another run's files must not break this report
            log.info("report: sibling %s not read: %s", other.name, error)
            continue
        if same:
            out.append(SiblingRun(other.name, model_label(cfg.model), metrics))
    return out


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
    splits = {s: _split(s, prepared.split(s), task, vocabulary) for s in EVALUATED_SPLITS}
    timings["samples"] = time.perf_counter() - started
    horizon, next_event = horizon_part(task), next_event_part(task)
    targets = list(horizon.targets) if horizon is not None else []
    notes: list[str] = []
    skipped: dict[str, str] = {}
    is_baseline = is_baseline_target(cfg.model.get("_target_", ""))
    model: EngagementModel | None = None
    trained_on = prepared.cache_dir.name
    if is_baseline:
        run = _baseline_run_scorer(run_dir, cfg, splits, targets)
    else:
        batch_size = options.batch_size or int(cfg.get("eval_batch_size", 1024))
        run, model, vocabulary, trained_on = _sequence_model_scorer(
            run_dir, cfg, task, prepared, splits, batch_size, notes
        )
    timings["model"] = run.seconds
    scorers = [run]
    exclude = baseline_name(str(cfg.model._target_)) if is_baseline else None
    scorers += reference_baselines(
        options.baselines, task, prepared, splits, vocabulary, exclude, skipped
    )
    timings["baselines"] = sum(s.seconds for s in scorers if s.kind == "baseline")
    if options.oracle and horizon is not None:
        oracle = oracle_scorer(cfg, task, splits["test"], options, ReferenceCache(prepared))
        if isinstance(oracle, str):
            skipped["oracle"] = oracle
            log.info("report: oracle skipped: %s", oracle)
        else:
            scorers.append(oracle)
            timings["oracle"] = oracle.seconds
    siblings = sibling_runs(run_dir, trained_on) if options.siblings else []
    recorded = _read_metrics(run_dir)
    if not recorded:
        notes.append("metrics.json is missing: the run did not finish, or was moved without it.")
    else:
        notes += _recorded_mismatch(run.metrics, recorded)
    timings["evaluate"] = time.perf_counter() - started
    return RunEvaluation(
        run_dir=run_dir,
        task=task,
        targets=tuple(targets),
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
    )


RECORDED_TOLERANCE = 1e-4  # CPU fp32 here vs the training device (TF32 on a GPU): ~1e-5


def _recorded_mismatch(computed: Mapping[str, float], recorded: Mapping[str, float]) -> list[str]:
    """A note when the recomputed metrics of the run's model differ from its metrics.json."""
    gaps = {
        key: abs(computed[key] - recorded[key])
        for key in computed.keys() & recorded.keys()
        if math.isfinite(computed[key]) and math.isfinite(recorded[key])
    }
    worst = max(gaps, key=gaps.__getitem__, default=None)
    if worst is None or gaps[worst] <= RECORDED_TOLERANCE:
        return []
    return [
        f"Recomputed metrics differ from metrics.json by up to {gaps[worst]:.2g} ({worst}: "
        f"{computed[worst]:.4f} here, {recorded[worst]:.4f} recorded); this report shows the "
        "recomputed values."
    ]


def _describe_source(cfg: DictConfig) -> str:
    source = instantiate(cfg.data.source)
    describe = getattr(source, "describe", None)
    return describe() if callable(describe) else type(source).__name__


def metric_key(name: str, target: str, targets: tuple[str, ...] | list[str]) -> str:
    """Where a horizon metric of one target lives: 'auroc' (one target) or 'auroc/<target>'."""
    return name if len(targets) <= 1 else f"{name}/{target}"


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
