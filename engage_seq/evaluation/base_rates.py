"""Has the base rate moved? Each horizon target's positive rate in the training windows, the
newest labelled window (validation) and the test window, and a flag when training and
validation differ by more than a stated amount.

Why: a model fitted on older windows learns their level. When the customer base ages (fewer
purchases per user) or grows, the newest window's rate differs, and the scores come out too
high or too low although they rank well: exactly what a post-hoc calibration fitted on the
newest window (``calibration.method``) or training on it (``training.refit``) corrects. The
flag compares training with validation, not test, because validation is what a user has at
training time; test is reported next to it. numpy only."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RELATIVE_SHIFT = 0.20  # |val - train| / train above this ...
ABSOLUTE_SHIFT = 0.01  # ... and |val - train| above one percentage point: flagged


@dataclass(frozen=True)
class BaseRateShift:
    """One target's positive rates (share of samples with the event in the horizon)."""

    target: str
    train: float
    val: float
    test: float
    flagged: bool  # train vs val beyond both thresholds

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "relative_threshold": RELATIVE_SHIFT,
            "absolute_threshold": ABSOLUTE_SHIFT,
        }


def shift_flagged(train: float, newest: float) -> bool:
    """Both a relative change above `RELATIVE_SHIFT` and an absolute one above
    `ABSOLUTE_SHIFT`: a relative test alone fires on rare events (0.5 % -> 0.7 %), an
    absolute one alone on common ones where a point is noise."""
    if not (np.isfinite(train) and np.isfinite(newest)):
        return False
    gap = abs(newest - train)
    return gap > ABSOLUTE_SHIFT and gap > RELATIVE_SHIFT * train


def base_rate_shifts(
    targets: tuple[str, ...] | list[str],
    train: np.ndarray,  # (N_train, L) 0/1 labels
    val: np.ndarray,  # (N_val, L)
    test: np.ndarray,  # (N_test, L)
) -> list[BaseRateShift]:
    """One entry per horizon target (empty for next-event tasks or an empty split)."""
    if not targets or 0 in (train.shape[0], val.shape[0]):
        return []
    rates = [
        np.asarray(labels, dtype=np.float64).mean(axis=0) if labels.shape[0] else None
        for labels in (train, val, test)
    ]
    out = []
    for i, target in enumerate(targets):
        train_rate, val_rate = float(rates[0][i]), float(rates[1][i])
        test_rate = float(rates[2][i]) if rates[2] is not None else float("nan")
        flagged = shift_flagged(train_rate, val_rate)
        out.append(BaseRateShift(target, train_rate, val_rate, test_rate, flagged))
    return out
