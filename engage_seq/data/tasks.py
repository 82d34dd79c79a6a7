"""What a sample is labelled with: the task definitions Hydra instantiates (``conf/task``).

A task turns a user's history lists (`sequences.user_histories`) and a cutoff into label
columns, and says how far after a cutoff its labels look (`label_window_seconds`), which is
what separates the splits (`sampling.plan_cutoffs`). Polars expressions only; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from engage_seq.common.times import parse_duration


@dataclass(frozen=True)
class HorizonTask:
    """Propensity task: does the user do any of ``targets`` within ``horizon`` of the cutoff?

    Several targets make a multi-label task with one output per target.
    """

    targets: tuple[str, ...] = ("purchase",)
    horizon: str = "7d"
    name: str = "purchase_7d"

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets:
            raise ValueError(f"task {self.name!r}: list at least one target event type")
        parse_duration(self.horizon)

    @property
    def horizon_seconds(self) -> int:
        return parse_duration(self.horizon)

    @property
    def label_columns(self) -> tuple[str, ...]:
        return tuple(f"label_{t}" for t in self.targets)

    @property
    def label_window_seconds(self) -> int:
        """How far after a cutoff labels may look: splits are separated by at least this."""
        return self.horizon_seconds

    def label_exprs(self, cutoff: int) -> list[pl.Expr]:
        """One boolean per target from a user's history lists (see `user_histories`).

        ``n_history`` events lie before the cutoff; the label window is the next events up to
        ``cutoff + horizon``, found by counting, so no row is filtered or regrouped.
        """
        window_end = pl.col("ts").list.eval(pl.element() < cutoff + self.horizon_seconds).list.sum()
        window = pl.col("event_type").list.slice(
            pl.col("n_history"), window_end - pl.col("n_history")
        )
        return [
            window.list.contains(target).alias(column)
            for target, column in zip(self.targets, self.label_columns, strict=True)
        ]


@dataclass(frozen=True)
class NextEventTask:
    """Which event type comes next after the cutoff, and after how many hours.

    Only users whose next event falls within ``max_gap`` get a sample (the others are counted
    and dropped); ``max_gap`` also separates the splits, so no label crosses into the next one.
    """

    max_gap: str = "7d"
    name: str = "next_event"

    def __post_init__(self) -> None:
        parse_duration(self.max_gap)

    @property
    def targets(self) -> tuple[str, ...]:
        return ()

    @property
    def label_columns(self) -> tuple[str, ...]:
        return ("label_next_event", "label_next_hours")

    @property
    def label_window_seconds(self) -> int:
        return parse_duration(self.max_gap)

    def label_exprs(self, cutoff: int) -> list[pl.Expr]:
        """The event right after the history (index ``n_history``), if within ``max_gap``;
        null otherwise (such samples are counted and dropped)."""
        next_ts = pl.col("ts").list.get(pl.col("n_history"), null_on_oob=True)
        in_window = next_ts < cutoff + self.label_window_seconds
        next_type = pl.col("event_type").list.get(pl.col("n_history"), null_on_oob=True)
        hours = ((next_ts - cutoff) / 3600.0).cast(pl.Float32)
        return [
            pl.when(in_window).then(next_type).alias("label_next_event"),
            pl.when(in_window).then(hours).alias("label_next_hours"),
        ]


@dataclass(frozen=True)
class MultiTask:
    """Both heads on one encoder: horizon labels plus, where one exists, the next event.

    Unlike `NextEventTask` alone, samples without a next event within ``max_gap`` are kept
    (their next-event label is null and masked out of that head's loss), so the horizon
    head sees exactly the population it would see on its own.
    """

    horizon: HorizonTask = field(default_factory=HorizonTask)
    next_event: NextEventTask = field(default_factory=NextEventTask)
    name: str = "multitask"

    @property
    def targets(self) -> tuple[str, ...]:
        return self.horizon.targets

    @property
    def label_columns(self) -> tuple[str, ...]:
        return (*self.horizon.label_columns, *self.next_event.label_columns)

    @property
    def label_window_seconds(self) -> int:
        return max(self.horizon.label_window_seconds, self.next_event.label_window_seconds)

    def label_exprs(self, cutoff: int) -> list[pl.Expr]:
        return [*self.horizon.label_exprs(cutoff), *self.next_event.label_exprs(cutoff)]


Task = HorizonTask | NextEventTask | MultiTask


def horizon_part(task: Task) -> HorizonTask | None:
    """The horizon (propensity) part of a task, if it has one."""
    if isinstance(task, MultiTask):
        return task.horizon
    return task if isinstance(task, HorizonTask) else None


def next_event_part(task: Task) -> NextEventTask | None:
    """The next-event part of a task, if it has one."""
    if isinstance(task, MultiTask):
        return task.next_event
    return task if isinstance(task, NextEventTask) else None
