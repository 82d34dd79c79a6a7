"""L2 logistic regression in numpy (the fit behind `RFMLogisticRegression`)."""

from __future__ import annotations

import math

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
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
        p = sigmoid(xb @ beta)
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
