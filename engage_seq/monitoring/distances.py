"""How far apart two histograms on the same bins are: PSI and the Jensen-Shannon distance.

PSI reads as "how much would a model notice" (it grows without bound where a share vanishes,
so empty bins are smoothed); the JS distance as "how different" (symmetric, in [0, 1], finite
even where a bin is empty on one side). numpy only.
"""

from __future__ import annotations

import math

import numpy as np

SMOOTHING = 1e-4  # share given to a bin that is empty on one side (PSI would be infinite)


def psi(reference: np.ndarray, current: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """Population stability index of two count (or share) vectors over the same bins; each
    share is smoothed as (share + eps) / (1 + K eps), so empty bins stay finite."""
    r, c = shares(reference), shares(current)
    k = r.size
    r = (r + smoothing) / (1.0 + k * smoothing)
    c = (c + smoothing) / (1.0 + k * smoothing)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2: sqrt of the JS divergence, 0 (same) to 1 (disjoint)."""
    r, c = shares(reference), shares(current)
    m = (r + c) / 2.0

    def kl(p: np.ndarray) -> float:
        inside = p > 0
        return float(np.sum(p[inside] * np.log2(p[inside] / m[inside])))

    return math.sqrt(max(0.5 * kl(r) + 0.5 * kl(c), 0.0))


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total (uniform when there is nothing to share)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.full(counts.size, 1.0 / max(counts.size, 1))
