"""Practitioners' baselines, fitted on the very same samples as the sequence models.

A sequence model is only worth its cost if it beats what a practitioner would build first, so
every baseline here reads the samples frame of `engage_seq.data.sequences.build_samples` (same
users,
cutoffs, splits and labels) and nothing else:

* `RFMLogisticRegression` - hand-made recency / frequency / monetary aggregates
  (`AggregateFeatures`) and an L2 logistic regression: the classic propensity model, and the
  floor a sequence model must clear.
* `GradientBoostedTrees` - the same aggregates with LightGBM: the strongest usual tabular
  baseline; if it matches the sequence model, order and timing add little beyond counts.
* `MostFrequentNextEvent` - the training label distribution: the floor for the next-event task
  (its log-loss is the entropy of the labels).
* `MarkovNextEvent` - P(next | last event): how much of the next event the last one explains.

Each has ``fit(train, val, label_columns, ...)``, ``predict_proba(samples)`` and a
JSON-serialisable ``to_dict()`` / ``from_dict()`` (no pickle, so saved baselines are safe to
load). `BASELINES` maps the Hydra model names to the classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl

FORMAT_VERSION = 1
# log1p(hours) standing in for "never seen in the kept history": ~100 years, larger than any
# real gap, and paired with a 0/1 indicator so a linear model need not rely on its value.
NEVER_LOG_HOURS = math.log1p(100 * 365 * 24)
WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)
UNKNOWN_CLASS = "<unknown>"

Frame = pl.DataFrame | pl.LazyFrame


def _lazy(samples: Frame) -> pl.LazyFrame:
    return samples.lazy() if isinstance(samples, pl.DataFrame) else samples


def _check_format(d: dict[str, Any], kind: str) -> None:
    if d.get("type") != kind or d.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"expected a saved {kind!r} baseline (format {FORMAT_VERSION}), got type "
            f"{d.get('type')!r}, format {d.get('format')!r}"
        )


class AggregateFeatures:
    """RFM aggregates per sample, as vectorised Polars list expressions.

    The aggregates see exactly the inputs of the sequence models: the list columns hold the
    most recent ``max_len`` events before the cutoff, so counts, windows, shares and
    "hours since the last X" are over that kept history (a type seen only before truncation
    counts as never seen); ``n_history`` and ``seconds_since_last`` cover the full history.

    Features, in order (`names`):

    * ``log_hours_since_last``  log1p(seconds_since_last / 3600) (recency)
    * ``log1p_n_history``  log1p(events before the cutoff, full history)
    * ``events_{1,7,30}d``  kept events with ``cutoff - ts <= window``
    * ``active_days``  distinct UTC days with a kept event
    * ``<num_col>_sum``, ``<num_col>_mean``  per numeric attribute, nulls and NaN ignored
      (sum 0 and mean 0 when no value is present)
    * ``count_event=<t>``, ``count_channel=<c>``  per event type / channel seen in training
    * ``log_hours_since=<t>``  log1p(hours since the last kept event of type t), or
      `NEVER_LOG_HOURS` when there is none, with ``never=<t>`` = 1 in that case
    * ``share=<t>``  count of t / kept events

    Types and channels unseen in training are ignored at transform time (they still count in
    the totals). Only the ``max_categories`` most frequent training values of each are kept,
    so a long-tailed taxonomy cannot blow up the feature count.
    """

    def __init__(self, max_categories: int = 100) -> None:
        if max_categories < 1:
            raise ValueError(f"max_categories must be >= 1, got {max_categories}")
        self.max_categories = max_categories
        self.event_types: list[str] = []
        self.channels: list[str] = []
        self.numeric_columns: list[str] = []
        self.fitted = False

    def fit(self, train: Frame) -> AggregateFeatures:
        """Learn the event types, channels (most frequent first, stored sorted) and the
        ``num_*`` columns of the training samples."""
        lazy = _lazy(train)
        self.numeric_columns = sorted(c for c in lazy.collect_schema().names() if c[:4] == "num_")
        self.event_types = self._top_values(lazy, "event_type")
        self.channels = self._top_values(lazy, "channel")
        self.fitted = True
        return self

    def _top_values(self, lazy: pl.LazyFrame, column: str) -> list[str]:
        counts = (
            lazy.select(pl.col(column).explode().alias("value"))
            .drop_nulls()
            .group_by("value")
            .len()
            .sort(["len", "value"], descending=[True, False])
            .head(self.max_categories)
            .collect()
        )
        return sorted(counts["value"].to_list())

    @property
    def names(self) -> list[str]:
        return [
            "log_hours_since_last",
            "log1p_n_history",
            *[f"events_{d}d" for d in WINDOWS_DAYS],
            "active_days",
            *[f"{c}_{stat}" for c in self.numeric_columns for stat in ("sum", "mean")],
            *[f"count_event={t}" for t in self.event_types],
            *[f"count_channel={c}" for c in self.channels],
            *[f"log_hours_since={t}" for t in self.event_types],
            *[f"never={t}" for t in self.event_types],
            *[f"share={t}" for t in self.event_types],
        ]

    def expressions(self) -> list[pl.Expr]:
        """One Float64 expression per feature, in `names` order."""
        age = pl.col("cutoff") - pl.col("ts")  # list[i64] seconds before the cutoff, all > 0
        kept = pl.col("event_type").list.len()
        exprs = [
            (pl.col("seconds_since_last") / 3600.0).log1p(),
            pl.col("n_history").cast(pl.Float64).log1p(),
            *[
                age.list.eval((pl.element() <= d * 86_400).cast(pl.Int64)).list.sum()
                for d in WINDOWS_DAYS
            ],
            pl.col("ts").list.eval(pl.element().floordiv(86_400)).list.n_unique(),
        ]
        for c in self.numeric_columns:
            values = pl.col(c).cast(pl.List(pl.Float64)).list.eval(pl.element().fill_nan(None))
            exprs += [values.list.sum(), values.list.mean().fill_null(0.0)]
        counts = [pl.col("event_type").list.count_matches(t) for t in self.event_types]
        exprs += counts
        exprs += [pl.col("channel").list.count_matches(c) for c in self.channels]
        last_ts = [
            pl.col("ts").list.get(
                pl.col("event_type").list.eval(pl.element().eq(t).arg_true().last()).list.first(),
                null_on_oob=True,
            )
            for t in self.event_types
        ]
        exprs += [
            ((pl.col("cutoff") - ts) / 3600.0).log1p().fill_null(NEVER_LOG_HOURS) for ts in last_ts
        ]
        exprs += [ts.is_null() for ts in last_ts]
        exprs += [(n / kept).fill_nan(0.0).fill_null(0.0) for n in counts]
        return [e.cast(pl.Float64).alias(f"f{i}") for i, e in enumerate(exprs)]

    def transform(self, samples: Frame) -> np.ndarray:
        """(N, F) float32 features, rows in sample order."""
        if not self.fitted:
            raise RuntimeError("AggregateFeatures.transform called before fit")
        lazy = _lazy(samples)
        missing = [c for c in self.numeric_columns if c not in lazy.collect_schema().names()]
        if missing:
            raise ValueError(f"samples lack the numeric columns seen in training: {missing}")
        out = lazy.select(self.expressions()).collect()
        return out.to_numpy().astype(np.float32, copy=False).reshape(out.height, -1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_categories": self.max_categories,
            "event_types": list(self.event_types),
            "channels": list(self.channels),
            "numeric_columns": list(self.numeric_columns),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AggregateFeatures:
        out = cls(int(d["max_categories"]))
        out.event_types = list(d["event_types"])
        out.channels = list(d["channels"])
        out.numeric_columns = list(d["numeric_columns"])
        out.fitted = True
        return out


def _binary_labels(frame: Frame, split: str, columns: Sequence[str]) -> np.ndarray:
    """(N, L) float64 0/1 labels; each column needs both classes (else no model is defined)."""
    lazy = _lazy(frame)
    absent = [c for c in columns if c not in lazy.collect_schema().names()]
    if absent:
        raise ValueError(f"the {split} samples have no label columns {absent}")
    labels = lazy.select(pl.col(c).cast(pl.Float64) for c in columns).collect()
    for c in columns:
        nulls, positives = labels[c].null_count(), labels[c].sum()
        if nulls:
            raise ValueError(f"label column {c!r} has {nulls} null values in the {split} split")
        if positives == 0 or positives == labels.height:
            kind = "no positive" if positives == 0 else "only positive"
            raise ValueError(
                f"label column {c!r} has {kind} samples in the {split} split "
                f"({labels.height} samples): a classifier cannot be fitted or early-stopped; "
                "use a longer horizon, more cutoffs or another target"
            )
    return labels.to_numpy().reshape(labels.height, len(columns))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1.0, max_iter: int = 100, tol: float = 1e-6
) -> tuple[np.ndarray, float, int]:
    """L2 logistic regression by damped Newton (IRLS) in float64: minimises
    ``sum(log-loss) + l2 / 2 * ||coef||^2`` (intercept unpenalised).

    Returns (coef, intercept, iterations). Exact Hessians (F is small) and a backtracking
    line search make it converge from any start; L2 keeps separable data finite.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, f = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    penalty = np.full(f + 1, float(l2))
    penalty[-1] = 0.0
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    beta = np.zeros(f + 1)
    beta[-1] = math.log(rate / (1 - rate))
    jitter = 1e-10 * np.eye(f + 1)  # keeps H invertible with l2 = 0 and constant columns

    def objective(b: np.ndarray) -> float:
        z = xb @ b
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * b * b))

    current = objective(beta)
    for iteration in range(1, max_iter + 1):
        p = _sigmoid(xb @ beta)
        grad = xb.T @ (p - y) + penalty * beta
        hessian = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty) + jitter
        step = np.linalg.solve(hessian, grad)
        decrement = float(grad @ step)
        t = 1.0
        while True:  # Armijo backtracking: Newton steps overshoot on near-separable data
            candidate = beta - t * step
            value = objective(candidate)
            if value <= current - 1e-4 * t * decrement or t < 1e-10:
                break
            t *= 0.5
        beta, current = candidate, value
        if np.max(np.abs(t * step)) < tol:
            return beta[:-1], float(beta[-1]), iteration
    return beta[:-1], float(beta[-1]), max_iter


class _HorizonBaseline:
    """Shared plumbing of the propensity baselines: aggregates in, one column per target."""

    task_type: ClassVar[str] = "horizon"
    name: ClassVar[str]
    features: AggregateFeatures
    label_columns: list[str]

    def _features(self, train: Frame, label_columns: Sequence[str]) -> np.ndarray:
        if isinstance(label_columns, str) or not label_columns:
            raise ValueError(f"label_columns must be a non-empty list, got {label_columns!r}")
        self.label_columns = list(label_columns)
        self.features = AggregateFeatures().fit(train)
        return self.features.transform(train)


class RFMLogisticRegression(_HorizonBaseline):
    """Standardised RFM aggregates + one L2 logistic regression per target (Newton, numpy).

    Standardisation uses training means and standard deviations (constant features get
    std 1, so they stay 0). ``val`` is only scored (``val_log_loss``), never fitted on.
    """

    name = "rfm_logreg"

    def __init__(self, l2: float = 1.0, max_iter: int = 100, tol: float = 1e-6) -> None:
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.val_log_loss: dict[str, float] = {}
        self.iterations: dict[str, int] = {}

    def fit(
        self, train: Frame, val: Frame | None, label_columns: Sequence[str]
    ) -> RFMLogisticRegression:
        x = self._features(train, label_columns).astype(np.float64)
        y = _binary_labels(train, "train", self.label_columns)
        y_val = _binary_labels(val, "val", self.label_columns) if val is not None else None
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 1e-12, std, 1.0)
        z = (x - self.mean) / self.std
        coefs, intercepts = [], []
        for j, column in enumerate(self.label_columns):
            coef, intercept, iterations = fit_logistic(z, y[:, j], self.l2, self.max_iter, self.tol)
            coefs.append(coef)
            intercepts.append(intercept)
            self.iterations[column] = iterations
        self.coef = np.stack(coefs, axis=1)  # (F, L)
        self.intercept = np.asarray(intercepts)
        if val is not None and y_val is not None:
            p = np.clip(self.predict_proba(val), 1e-15, 1 - 1e-15)
            loss = -(y_val * np.log(p) + (1 - y_val) * np.log1p(-p)).mean(axis=0)
            self.val_log_loss = dict(zip(self.label_columns, map(float, loss), strict=True))
        return self

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, n_targets) float64 probabilities."""
        z = (self.features.transform(samples).astype(np.float64) - self.mean) / self.std
        return _sigmoid(z @ self.coef + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "format": FORMAT_VERSION,
            "params": {"l2": self.l2, "max_iter": self.max_iter, "tol": self.tol},
            "label_columns": self.label_columns,
            "features": self.features.to_dict(),
            "feature_names": self.features.names,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "iterations": self.iterations,
            "val_log_loss": self.val_log_loss,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RFMLogisticRegression:
        _check_format(d, cls.name)
        out = cls(**d["params"])
        out.label_columns = list(d["label_columns"])
        out.features = AggregateFeatures.from_dict(d["features"])
        n_features, n_targets = len(out.features.names), len(out.label_columns)
        out.mean = np.asarray(d["mean"], dtype=np.float64)
        out.std = np.asarray(d["std"], dtype=np.float64)
        out.coef = np.asarray(d["coef"], dtype=np.float64).reshape(n_features, n_targets)
        out.intercept = np.asarray(d["intercept"], dtype=np.float64)
        out.iterations = dict(d.get("iterations", {}))
        out.val_log_loss = dict(d.get("val_log_loss", {}))
        return out


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as error:
        raise ImportError("model=gbm needs LightGBM: pip install 'engage_seq[gbm]'") from error
    return lightgbm


class GradientBoostedTrees(_HorizonBaseline):
    """RFM aggregates + one LightGBM binary model per target.

    With ``val``, boosting stops once the validation log-loss has not improved for
    ``early_stopping_rounds`` rounds and `best_iterations` records where it peaked; without
    it all ``n_estimators`` trees are kept. Fits are deterministic for a fixed ``seed`` and
    ``n_jobs``.
    """

    name = "gbm"

    def __init__(
        self,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        early_stopping_rounds: int = 30,
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.n_estimators = int(n_estimators)
        self.learning_rate = float(learning_rate)
        self.num_leaves = int(num_leaves)
        self.min_child_samples = int(min_child_samples)
        self.early_stopping_rounds = int(early_stopping_rounds)
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)
        self.boosters: list[Any] = []
        self.best_iterations: dict[str, int] = {}

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_jobs,
            "verbose": -1,
        }

    def fit(
        self, train: Frame, val: Frame | None, label_columns: Sequence[str]
    ) -> GradientBoostedTrees:
        lgb = _lightgbm()
        x = self._features(train, label_columns)
        y = _binary_labels(train, "train", self.label_columns)
        x_val = self.features.transform(val) if val is not None else None
        y_val = _binary_labels(val, "val", self.label_columns) if val is not None else None
        params = self._params()
        self.boosters, self.best_iterations = [], {}
        for j, column in enumerate(self.label_columns):
            data = lgb.Dataset(x, label=y[:, j], params=params)
            valid_sets, callbacks = [], []
            if x_val is not None and y_val is not None:
                valid_sets = [lgb.Dataset(x_val, label=y_val[:, j], reference=data)]
                callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
            booster = lgb.train(
                params,
                data,
                num_boost_round=self.n_estimators,
                valid_sets=valid_sets or None,
                callbacks=callbacks or None,
            )
            best = booster.best_iteration or booster.current_iteration()
            # keep only the trees that are used: identical predictions, smaller artifact
            self.boosters.append(lgb.Booster(model_str=booster.model_to_string(best)))
            self.best_iterations[column] = int(best)
        return self

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, n_targets) float64 probabilities."""
        x = self.features.transform(samples)
        columns = [
            booster.predict(x, num_iteration=self.best_iterations[c])
            for booster, c in zip(self.boosters, self.label_columns, strict=True)
        ]
        return np.stack(columns, axis=1).astype(np.float64, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "format": FORMAT_VERSION,
            "params": {
                "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples,
                "early_stopping_rounds": self.early_stopping_rounds,
                "seed": self.seed,
                "n_jobs": self.n_jobs,
            },
            "label_columns": self.label_columns,
            "features": self.features.to_dict(),
            "feature_names": self.features.names,
            "best_iterations": self.best_iterations,
            "models": [b.model_to_string() for b in self.boosters],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GradientBoostedTrees:
        _check_format(d, cls.name)
        lgb = _lightgbm()
        out = cls(**d["params"])
        out.label_columns = list(d["label_columns"])
        out.features = AggregateFeatures.from_dict(d["features"])
        out.best_iterations = {k: int(v) for k, v in d["best_iterations"].items()}
        out.boosters = [lgb.Booster(model_str=text) for text in d["models"]]
        return out


class _NextEventBaseline:
    """Shared plumbing of the next-event baselines.

    Classes are fixed by the caller: column 0 is `UNKNOWN_CLASS` (any label or previous event
    not in ``event_types``), column ``1 + i`` is ``event_types[i]``. Samples with a null label
    are skipped in fit (the sample builder drops them anyway); ``val`` is not used.
    """

    task_type: ClassVar[str] = "next_event"
    name: ClassVar[str]
    event_types: list[str]
    label_column: str
    marginal: np.ndarray  # (n_classes,) smoothed training distribution of the label

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0 (additive smoothing), got {alpha}")
        self.alpha = float(alpha)

    @property
    def classes(self) -> list[str]:
        return [UNKNOWN_CLASS, *self.event_types]

    def _fitted_dict(self, **fitted: Any) -> dict[str, Any]:
        """to_dict: the fields every next-event baseline has, plus its own fitted arrays."""
        return {
            "type": self.name,
            "format": FORMAT_VERSION,
            "params": {"alpha": self.alpha},
            "label_column": self.label_column,
            "event_types": self.event_types,
            "marginal": self.marginal.tolist(),
            **fitted,
        }

    @classmethod
    def _restore(cls, d: dict[str, Any]) -> Any:
        """from_dict: the shared fields; the subclass restores its own."""
        _check_format(d, cls.name)
        out = cls(**d["params"])
        out.label_column = d["label_column"]
        out.event_types = list(d["event_types"])
        out.marginal = np.asarray(d["marginal"], dtype=np.float64)
        return out

    def _class_id(self, expr: pl.Expr) -> pl.Expr:
        """0 for unknown, 1 + i for event_types[i]; null stays null."""
        ids = {t: i + 1 for i, t in enumerate(self.event_types)}
        mapped = expr.replace_strict(ids, default=0, return_dtype=pl.Int64)
        return pl.when(expr.is_null()).then(None).otherwise(mapped)

    def _setup(
        self, train: Frame, label_columns: Sequence[str], event_types: Sequence[str]
    ) -> pl.LazyFrame:
        if isinstance(event_types, str) or not event_types:
            raise ValueError(f"event_types must be a non-empty list, got {event_types!r}")
        if len(set(event_types)) != len(event_types):
            raise ValueError(f"event_types has duplicates: {list(event_types)}")
        if isinstance(label_columns, str) or not label_columns:
            raise ValueError(f"label_columns must be a non-empty list, got {label_columns!r}")
        self.event_types = [str(t) for t in event_types]
        self.label_column = label_columns[0]
        lazy = _lazy(train)
        if self.label_column not in lazy.collect_schema().names():
            raise ValueError(f"the train samples have no label column {self.label_column!r}")
        labelled = lazy.filter(pl.col(self.label_column).is_not_null())
        if labelled.select(pl.len()).collect().item() == 0:
            raise ValueError(f"label column {self.label_column!r} has no labels in the train split")
        return labelled

    def _marginal(self, labelled: pl.LazyFrame) -> np.ndarray:
        k = len(self.classes)
        found = (
            labelled.group_by(self._class_id(pl.col(self.label_column)).alias("next"))
            .len()
            .collect()
        )
        counts = np.zeros(k)
        counts[found["next"].to_numpy()] = found["len"].to_numpy()
        return (counts + self.alpha) / (counts.sum() + self.alpha * k)


class MostFrequentNextEvent(_NextEventBaseline):
    """The smoothed training distribution of the next event, the same for every sample."""

    name = "most_frequent"

    def fit(
        self,
        train: Frame,
        val: Frame | None = None,
        label_columns: Sequence[str] = ("label_next_event",),
        *,
        event_types: Sequence[str],
    ) -> MostFrequentNextEvent:
        labelled = self._setup(train, label_columns, event_types)
        self.marginal = self._marginal(labelled)
        return self

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, len(event_types) + 1) float64, rows summing to 1."""
        n = _lazy(samples).select(pl.len()).collect().item()
        return np.tile(self.marginal, (n, 1))

    def to_dict(self) -> dict[str, Any]:
        return self._fitted_dict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MostFrequentNextEvent:
        return cls._restore(d)


class MarkovNextEvent(_NextEventBaseline):
    """First-order Markov chain: P(next | last event of the history), additively smoothed.

    ``transitions[i, j] = (n(i -> j) + alpha) / (n(i) + alpha * K)`` over training samples,
    where i is the class of the last event in ``event_type`` and j that of the label. A
    previous class never seen in training (and an empty history) gets the smoothed marginal.
    """

    name = "markov"

    def fit(
        self,
        train: Frame,
        val: Frame | None = None,
        label_columns: Sequence[str] = ("label_next_event",),
        *,
        event_types: Sequence[str],
    ) -> MarkovNextEvent:
        labelled = self._setup(train, label_columns, event_types)
        self.marginal = self._marginal(labelled)
        k = len(self.classes)
        found = (
            labelled.select(
                self._class_id(pl.col("event_type").list.last()).alias("prev"),
                self._class_id(pl.col(self.label_column)).alias("next"),
            )
            .drop_nulls("prev")
            .group_by("prev", "next")
            .len()
            .collect()
        )
        counts = np.zeros((k, k))
        counts[found["prev"].to_numpy(), found["next"].to_numpy()] = found["len"].to_numpy()
        totals = counts.sum(axis=1, keepdims=True)
        smoothed = (counts + self.alpha) / (totals + self.alpha * k)
        self.transitions = np.where(totals > 0, smoothed, self.marginal)
        self.seen_previous = (totals[:, 0] > 0).tolist()
        return self

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, len(event_types) + 1) float64, rows summing to 1."""
        k = len(self.classes)
        prev = (
            _lazy(samples)
            .select(self._class_id(pl.col("event_type").list.last()).fill_null(k).alias("p"))
            .collect()["p"]
            .to_numpy()
        )
        return np.vstack([self.transitions, self.marginal])[prev]

    def to_dict(self) -> dict[str, Any]:
        return self._fitted_dict(
            transitions=self.transitions.tolist(), seen_previous=self.seen_previous
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MarkovNextEvent:
        out = cls._restore(d)
        out.transitions = np.asarray(d["transitions"], dtype=np.float64)
        out.seen_previous = list(d["seen_previous"])
        return out


Baseline = RFMLogisticRegression | GradientBoostedTrees | MostFrequentNextEvent | MarkovNextEvent
BASELINES: dict[str, type[Baseline]] = {
    "rfm_logreg": RFMLogisticRegression,
    "gbm": GradientBoostedTrees,
    "markov": MarkovNextEvent,
    "most_frequent": MostFrequentNextEvent,
}
