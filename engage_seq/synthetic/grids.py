"""Posteriors on grids: 1-D and 2-D piecewise-constant densities per row, placed where a coarse
pass finds the mass, and stratified inverse-CDF draws from them (the oracle's numerics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Coarse grids only locate a user's posterior; the fine per-user grid then spans where it has
# mass.
_FINE_GRID_POINTS = 48
_NEGLIGIBLE_MASS = 1e-7  # posterior mass the fine grid may leave out on each side


@dataclass(frozen=True)
class _GridPosterior:
    """A 1-D posterior per row as a piecewise-constant density on a uniform per-row grid."""

    points: np.ndarray  # (rows, G) cell centres
    weights: np.ndarray  # (rows, G) cell probabilities, summing to 1 per row
    step: np.ndarray  # (rows,) cell width
    log_evidence: np.ndarray  # (rows,) log of the integral of the unnormalised density

    def cdf(self, values: np.ndarray) -> np.ndarray:
        """P(parameter <= values[i]) under row i's posterior."""
        left_edge = self.points - self.step[:, None] / 2
        covered = np.clip((values[:, None] - left_edge) / self.step[:, None], 0.0, 1.0)
        return (self.weights * covered).sum(axis=1)

    def sample(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Inverse-CDF draws for `rows`, one per uniform in `u` (rows.size, R)."""
        cell, inside = _sample_cells(self.weights[rows], u)
        centre = np.take_along_axis(self.points[rows], cell, axis=1)
        return centre + (inside - 0.5) * self.step[rows, None]


def _sample_cells(weights: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse CDF over the cells of each row of `weights` (n, G) for the uniforms `u` (n, R):
    the cell of each draw, and where in the cell's probability its uniform fell (uniform in
    [0, 1) given the cell, so it can place the draw inside the cell)."""
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    n, g = cdf.shape
    shift = np.arange(n)[:, None]  # rows side by side on one axis, for one searchsorted
    cell = np.searchsorted((cdf + shift).ravel(), (u + shift).ravel(), side="right")
    cell = np.minimum(cell.reshape(u.shape) - shift * g, g - 1)
    upper = np.take_along_axis(cdf, cell, axis=1)
    lower = np.where(cell > 0, np.take_along_axis(cdf, np.maximum(cell - 1, 0), axis=1), 0.0)
    inside = np.clip((u - lower) / np.maximum(upper - lower, 1e-300), 0.0, 1.0)
    return cell, inside


def _grid_posterior(
    log_density: Callable[[np.ndarray], np.ndarray], coarse: np.ndarray, n_rows: int
) -> _GridPosterior:
    """Per-row posterior on a fine grid placed where a shared coarse grid finds the mass.

    `log_density` maps points (n_rows, G) to the unnormalised log posterior density. Two passes
    let a fixed number of points follow both vague posteriors (light users, near the prior) and
    sharp ones (heavy users) without knowing the shape in advance.
    """
    coarse_lp = log_density(np.broadcast_to(coarse, (n_rows, coarse.size)))
    mass = np.exp(coarse_lp - coarse_lp.max(axis=1, keepdims=True))
    cdf = np.cumsum(mass, axis=1) / mass.sum(axis=1, keepdims=True)
    lo = coarse[np.maximum((cdf < _NEGLIGIBLE_MASS).sum(axis=1) - 1, 0)]
    hi = coarse[np.minimum((cdf < 1.0 - _NEGLIGIBLE_MASS).sum(axis=1) + 1, coarse.size - 1)]
    step = (hi - lo) / _FINE_GRID_POINTS
    points = lo[:, None] + step[:, None] * (np.arange(_FINE_GRID_POINTS) + 0.5)
    lp = log_density(points)
    top = lp.max(axis=1, keepdims=True)
    density = np.exp(lp - top)
    total = density.sum(axis=1, keepdims=True)
    return _GridPosterior(
        points=points,
        weights=density / total,
        step=step,
        log_evidence=top[:, 0] + np.log(total[:, 0] * step),
    )


@dataclass(frozen=True)
class _JointGridPosterior:
    """A 2-D posterior per row, piecewise constant on a per-row product grid of cells."""

    b: np.ndarray  # (rows, Gb) cell centres of the first parameter
    x: np.ndarray  # (rows, Gx) ... and of the second
    b_step: np.ndarray  # (rows,)
    x_step: np.ndarray  # (rows,)
    weights: np.ndarray  # (rows, Gb, Gx), summing to 1 per row
    log_evidence: np.ndarray  # (rows,)

    def sample(
        self, rows: np.ndarray, u: np.ndarray, jitter: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Joint draws for `rows`: a cell by inverse CDF of `u` (rows.size, R), uniform inside
        it (the CDF position for b, `jitter` for x)."""
        gb, gx = self.b.shape[1], self.x.shape[1]
        cell, inside = _sample_cells(self.weights[rows].reshape(rows.size, gb * gx), u)
        at_b, at_x = np.divmod(cell, gx)
        b = (
            np.take_along_axis(self.b[rows], at_b, axis=1)
            + (inside - 0.5) * self.b_step[rows, None]
        )
        x = (
            np.take_along_axis(self.x[rows], at_x, axis=1)
            + (jitter - 0.5) * self.x_step[rows, None]
        )
        return b, x


def _mass_range(mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a 1-D mass (rows, G): the first and last cell to keep so that at most
    `_NEGLIGIBLE_MASS` is left out on each side, widened by one cell."""
    cdf = np.cumsum(mass, axis=1) / mass.sum(axis=1, keepdims=True)
    first = np.maximum((cdf < _NEGLIGIBLE_MASS).sum(axis=1) - 1, 0)
    last = np.minimum((cdf < 1.0 - _NEGLIGIBLE_MASS).sum(axis=1) + 1, mass.shape[1] - 1)
    return first, last


def _stratified_uniforms(rng: np.random.Generator, rows: int, replicates: int) -> np.ndarray:
    """(rows, replicates) uniforms, the r-th in [r, r + 1) / replicates: the replicates cover
    each posterior evenly (less Monte Carlo noise for free). Sorted along each row, which keeps
    the inverse-CDF lookup fast; `_Posterior.draw` shuffles each row afterwards."""
    return (np.arange(replicates) + rng.random((rows, replicates))) / replicates
