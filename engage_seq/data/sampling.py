"""Where cutoffs go: the sampling settings and the leakage-checked plan of cutoffs per split.

Every label window is fully observed and the splits never overlap: the last training label
window ends at or before the first validation cutoff, and likewise validation before test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engage_seq.common.times import format_instant, parse_duration, parse_instant
from engage_seq.data.tasks import Task

SPLITS: tuple[str, ...] = ("train", "val", "test")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingConfig:
    """How cutoffs are placed and how much history each sample keeps.

    By default the test cutoff is the last midnight from which a full horizon is observed, the
    validation cutoff one horizon earlier, and ``n_train_cutoffs`` training cutoffs every
    ``cutoff_every`` ending one horizon before validation. Set ``test_cutoff`` (ISO date) to pin it.
    """

    max_len: int = 64
    n_train_cutoffs: int = 6
    cutoff_every: str = "7d"
    min_history_events: int = 1
    test_cutoff: str | None = None
    # Categorical values seen fewer times in the training period map to the unknown id.
    min_category_count: int = 1
    # Out of core: build in this many user-hash shards, one in memory at a time, and write one
    # sample file per shard. 1 = everything in memory (fastest when it fits).
    shards: int = 1
    # Rolling training cutoffs: every cutoff_every from train_start (replaces n_train_cutoffs).
    train_start: str | None = None
    # Explicit cutoffs (ISO dates) per split; each replaces the derived ones of its split.
    train_cutoffs: tuple[str, ...] | None = None
    val_cutoffs: tuple[str, ...] | None = None
    test_cutoffs: tuple[str, ...] | None = None
    # Eligibility: the user's last event must be at most this long before the cutoff.
    active_within: str | None = None
    # Disjoint users on top of the temporal split: this share of users (by key hash) is held
    # out of training and only they form val/test samples. 0 = off.
    holdout_user_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("train_cutoffs", "val_cutoffs", "test_cutoffs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.active_within is not None:
            parse_duration(self.active_within)
        if not 0.0 <= self.holdout_user_fraction < 1.0:
            raise ValueError(
                f"holdout_user_fraction must be in [0, 1), got {self.holdout_user_fraction}"
            )
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.n_train_cutoffs < 1:
            raise ValueError(f"n_train_cutoffs must be >= 1, got {self.n_train_cutoffs}")
        if self.shards < 1:
            raise ValueError(f"shards must be >= 1, got {self.shards}")
        if self.min_history_events < 1:
            raise ValueError(f"min_history_events must be >= 1, got {self.min_history_events}")
        parse_duration(self.cutoff_every)


@dataclass(frozen=True)
class CutoffPlan:
    """Cutoffs (epoch seconds) per split, with the temporal-split invariants checked."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    horizon_seconds: int

    def __post_init__(self) -> None:
        for split in SPLITS:
            if not getattr(self, split):
                raise ValueError(f"cutoff plan has no {split} cutoff")
        h = self.horizon_seconds
        if max(self.train) + h > min(self.val):
            raise ValueError(
                f"leakage: the last train label window ends {format_instant(max(self.train) + h)},"
                f" after the first validation cutoff {format_instant(min(self.val))}"
            )
        if max(self.val) + h > min(self.test):
            raise ValueError(
                "leakage: the last validation label window ends "
                f"{format_instant(max(self.val) + h)}, after the first test cutoff "
                f"{format_instant(min(self.test))}"
            )

    def items(self) -> list[tuple[str, int]]:
        return [(split, c) for split in SPLITS for c in sorted(getattr(self, split))]

    def to_dict(self) -> dict[str, list[str]]:
        return {
            split: [format_instant(c) for c in sorted(getattr(self, split))] for split in SPLITS
        }


def plan_cutoffs(
    data_start: int, data_end: int, task: Task, sampling: SamplingConfig
) -> CutoffPlan:
    """Place cutoffs so every label window is fully observed and splits never overlap.

    ``data_end`` is exclusive (last event time + 1 s). Explicit cutoffs in ``sampling`` win;
    otherwise test is the last midnight with a full label window after it, validation one
    window earlier, and training cutoffs every ``cutoff_every`` before that (from
    ``train_start`` when set, else ``n_train_cutoffs`` of them).
    """
    h = task.label_window_seconds
    if sampling.test_cutoffs:
        test = sorted(parse_instant(c) for c in sampling.test_cutoffs)
    elif sampling.test_cutoff is not None:
        test = [parse_instant(sampling.test_cutoff)]
    else:
        test = [(data_end - h) // 86_400 * 86_400]  # last midnight with a full window after it
    if max(test) + h > data_end:
        raise ValueError(
            f"test cutoff {format_instant(max(test))} + label window {h // 3600} h ends after "
            f"the data ({format_instant(data_end)}): its labels would be censored. Use an "
            "earlier test cutoff or a shorter horizon."
        )
    if sampling.val_cutoffs:
        val = sorted(parse_instant(c) for c in sampling.val_cutoffs)
    else:
        val = [min(test) - h]
    step = parse_duration(sampling.cutoff_every)
    last_train = min(val) - h
    if sampling.train_cutoffs:
        train = sorted(parse_instant(c) for c in sampling.train_cutoffs)
    elif sampling.train_start is not None:
        first = parse_instant(sampling.train_start)
        train = list(range(last_train, first - 1, -step))[::-1]
    else:
        train = [last_train - i * step for i in range(sampling.n_train_cutoffs)][::-1]
    kept = [c for c in train if c > data_start]
    if 0 < len(kept) < len(train):
        log.warning(
            "only %d of %d training cutoffs fall after the data start %s; using %d",
            len(kept), len(train), format_instant(data_start), len(kept),
        )  # fmt: skip
    if not kept or min(val) <= data_start:
        raise ValueError(
            f"data from {format_instant(data_start)} to {format_instant(data_end)} is too short "
            f"for a {h // 3600} h label window: train/val/test need three non-overlapping "
            "label windows after some history. Use a shorter horizon, other cutoffs or more data."
        )
    return CutoffPlan(train=tuple(kept), val=tuple(val), test=tuple(test), horizon_seconds=h)
