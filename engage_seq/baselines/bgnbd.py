"""`BGNBD`: the buy-till-you-die model of customer-lifetime-value practice (BG/NBD, Fader,
Hardie & Lee 2005), fitted by maximum likelihood on the history before the cutoff and scoring
P(at least one target event in the horizon). SciPy is optional (``pip install
'engage_seq[btyd]'``) and imported only when a model is fitted.

The model: while alive, a user buys as a Poisson process of rate lambda ~ Gamma(r, alpha);
after each purchase they drop out for good with probability p ~ Beta(a, b), unobserved. Its
inputs per sample, in days: frequency ``x`` (repeat purchases), recency ``t_x`` (from the first
event to the last purchase) and age ``T`` (from the first event to the cutoff).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl

from engage_seq.baselines.frames import FORMAT_VERSION, Frame, as_lazy, check_format

DAY_SECONDS = 86_400.0
PARAMETERS = ("r", "alpha", "a", "b")
LOG_BOUND = 12.0  # each parameter in [e^-12, e^12]: far beyond any plausible fit


def import_scipy() -> tuple[Any, Any]:
    """``(scipy.optimize, scipy.special)``, or an ImportError that says how to install it."""
    try:
        from scipy import optimize, special
    except ImportError as error:
        raise ImportError("model=bgnbd needs SciPy: pip install 'engage_seq[btyd]'") from error
    return optimize, special


def target_of(column: str) -> str:
    """'label_purchase' -> 'purchase' (`engage_seq.data.HorizonTask.label_columns`)."""
    if not column.startswith("label_") or column == "label_next_event":
        raise ValueError(f"{column!r} is not a horizon label column (label_<event type>)")
    return column[len("label_") :]


def rfm_summary(samples: Frame, target: str) -> np.ndarray:
    """(N, 3) float64 ``x, t_x, T`` in days, rows in sample order, vectorised in Polars.

    The user's first kept event is their birth (the BTYD "first purchase"); ``x`` counts the
    ``target`` events after it, ``t_x`` is the time from birth to the last of them (0 when
    ``x`` = 0) and ``T`` from birth to the cutoff. On a purchase-only table this is exactly the
    textbook summary. The samples hold only the last ``max_len`` events before the cutoff, so
    for a user with a longer history the birth is the oldest *kept* event: ``x`` and ``T`` then
    cover that window only (``n_history`` counts the rest, but not their times).
    """
    birth = pl.col("ts").list.first()
    positions = pl.col("event_type").list.eval((pl.element() == target).arg_true())
    after_birth = positions.list.eval(pl.element().filter(pl.element() > 0))
    last_ts = pl.col("ts").list.get(after_birth.list.last(), null_on_oob=True)
    out = (
        as_lazy(samples)
        .select(
            after_birth.list.len().cast(pl.Float64).alias("x"),
            ((last_ts - birth) / DAY_SECONDS).fill_null(0.0).cast(pl.Float64).alias("t_x"),
            ((pl.col("cutoff") - birth) / DAY_SECONDS).cast(pl.Float64).alias("T"),
        )
        .collect()
    )
    return out.to_numpy().astype(np.float64, copy=False).reshape(out.height, 3)


def log_likelihood(params: np.ndarray, summary: np.ndarray, special: Any) -> np.ndarray:
    """Per-sample BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6), in log space."""
    r, alpha, a, b = params
    x, t_x, age = summary.T
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.betaln(a, b + x) - special.betaln(a, b)
    a3 = -(r + x) * np.log(alpha + age)
    repeat = x > 0
    # only defined for x > 0 (b + x - 1 > 0 there); -inf elsewhere drops the term
    a4 = np.full_like(x, -np.inf)
    xr = x[repeat]
    a4[repeat] = np.log(a) - np.log(b + xr - 1.0) - (r + xr) * np.log(alpha + t_x[repeat])
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_parameters(summary: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """Maximum-likelihood (r, alpha, a, b) by L-BFGS-B on their logs; and its iterations.

    Identical rows are pooled with weights first, so the cost grows with distinct summaries.
    """
    optimize, special = import_scipy()
    rows, weights = np.unique(summary, axis=0, return_counts=True)
    weights = weights / weights.sum()

    def loss(log_params: np.ndarray) -> float:
        value = -float(weights @ log_likelihood(np.exp(log_params), rows, special))
        return value if np.isfinite(value) else 1e300

    start = np.log(np.array([1.0, max(float(np.mean(summary[:, 2])), 1e-3), 1.0, 1.0]))
    result = optimize.minimize(
        loss,
        start,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * 4,
        options={"maxiter": max_iter, "ftol": tol},
    )
    return np.exp(result.x), int(result.nit)


def probability_alive(params: np.ndarray, summary: np.ndarray) -> np.ndarray:
    """P(still alive at T | x, t_x, T): 1 for x = 0 (no purchase after which to drop out)."""
    r, alpha, a, b = params
    x, t_x, age = summary.T
    log_odds_dead = np.where(
        x > 0,
        np.log(a)
        - np.log(np.maximum(b + x - 1.0, 1e-300))
        + (r + x) * (np.log(alpha + age) - np.log(alpha + t_x)),
        -np.inf,
    )
    return np.exp(-np.logaddexp(0.0, log_odds_dead))  # 1 / (1 + odds), stable


def probability_any(params: np.ndarray, summary: np.ndarray, horizon_days: float) -> np.ndarray:
    """P(at least one purchase in (T, T + h] | x, t_x, T), in closed form.

    Alive at T, the user drops out only right after a purchase, so "none in the horizon" is
    "dead" or "alive and no Poisson event in h"; given alive, lambda ~ Gamma(r + x, alpha + T)
    and P(none | alive) = ((alpha + T) / (alpha + T + h))^(r + x). Hence
    P(any) = P(alive) * (1 - ((alpha + T) / (alpha + T + h))^(r + x)), computed with expm1 /
    log1p (no hypergeometric function: that one is for the expected count).
    """
    r, alpha, _, _ = params
    x, _, age = summary.T
    none_if_alive = (r + x) * np.log1p(horizon_days / (alpha + age))
    p = probability_alive(params, summary) * -np.expm1(-none_if_alive)
    return np.clip(p, 0.0, 1.0)


class BGNBD:
    """BG/NBD per target event type, fitted on the last training cutoff's histories.

    One fit of (r, alpha, a, b) per target; labels are never used (the model is fitted on
    histories alone, as practitioners fit it), so ``val`` is ignored. The fit uses the samples
    of the *last* training cutoff: each user once, with their longest history; pooling all
    training cutoffs would count the same user several times over nested histories, which the
    likelihood (independent customers) does not allow for.
    """

    task_type: ClassVar[str] = "horizon"
    needs_horizon: ClassVar[bool] = True  # `fit_and_score_baseline` passes horizon_seconds
    name: ClassVar[str] = "bgnbd"

    def __init__(self, max_iter: int = 500, tol: float = 1.0e-10) -> None:
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.label_columns: list[str] = []
        self.horizon_seconds = 0
        self.params: dict[str, dict[str, float]] = {}
        self.iterations: dict[str, int] = {}
        self.n_fit_samples = 0

    def fit(
        self,
        train: Frame,
        val: Frame | None,
        label_columns: Sequence[str],
        horizon_seconds: int | None = None,
    ) -> BGNBD:
        if isinstance(label_columns, str) or not label_columns:
            raise ValueError(f"label_columns must be a non-empty list, got {label_columns!r}")
        if horizon_seconds is None or horizon_seconds <= 0:
            raise ValueError(
                f"BGNBD.fit needs the task's horizon_seconds (> 0), got {horizon_seconds!r}"
            )
        targets = [target_of(c) for c in label_columns]
        lazy = as_lazy(train)
        last = lazy.filter(pl.col("cutoff") == pl.col("cutoff").max()).collect()
        if last.height == 0:
            raise ValueError("BGNBD.fit: the training split has no samples")
        self.label_columns = list(label_columns)
        self.horizon_seconds = int(horizon_seconds)
        self.n_fit_samples = last.height
        self.params, self.iterations = {}, {}
        for column, target in zip(self.label_columns, targets, strict=True):
            fitted, iterations = fit_parameters(rfm_summary(last, target), self.max_iter, self.tol)
            self.params[column] = dict(zip(PARAMETERS, map(float, fitted), strict=True))
            self.iterations[column] = iterations
        return self

    def predict_proba(self, samples: Frame) -> np.ndarray:
        """(N, n_targets) float64 P(at least one target event within the horizon)."""
        if not self.params:
            raise RuntimeError("BGNBD.predict_proba called before fit")
        horizon_days = self.horizon_seconds / DAY_SECONDS
        columns = [
            probability_any(
                np.array([self.params[c][k] for k in PARAMETERS]),
                rfm_summary(samples, target_of(c)),
                horizon_days,
            )
            for c in self.label_columns
        ]
        return np.stack(columns, axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "format": FORMAT_VERSION,
            "params": {"max_iter": self.max_iter, "tol": self.tol},
            "label_columns": self.label_columns,
            "horizon_seconds": self.horizon_seconds,
            "fitted": self.params,
            "iterations": self.iterations,
            "n_fit_samples": self.n_fit_samples,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BGNBD:
        check_format(d, cls.name)
        out = cls(**d["params"])
        out.label_columns = list(d["label_columns"])
        out.horizon_seconds = int(d["horizon_seconds"])
        out.params = {
            c: {k: float(d["fitted"][c][k]) for k in PARAMETERS} for c in out.label_columns
        }
        out.iterations = {k: int(v) for k, v in d.get("iterations", {}).items()}
        out.n_fit_samples = int(d.get("n_fit_samples", 0))
        return out
