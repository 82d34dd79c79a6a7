"""Which samples each split keeps, and what each split holds (mergeable across shards).

The eligibility rules are counted per split under the first rule a sample fails; the
per-split sums (samples, users, history events, label sums) add up across user-hash shards
because every user lives in exactly one shard. `split_report` turns them into the report's
figures and refuses an empty split or a target without a positive label.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from engage_seq.common.times import parse_duration
from engage_seq.data.sampling import SPLITS, CutoffPlan, SamplingConfig
from engage_seq.data.tasks import NextEventTask, Task, next_event_part


def eligibility_rules(task: Task, sampling: SamplingConfig) -> list[tuple[str, pl.Expr]]:
    """(name, keep-condition) pairs applied in order to the built samples."""
    rules = [("min_history_events", pl.col("n_history") >= sampling.min_history_events)]
    if sampling.active_within is not None:
        recent = pl.col("seconds_since_last") <= parse_duration(sampling.active_within)
        rules.append(("inactive", recent))
    if isinstance(task, NextEventTask):  # a MultiTask keeps them (masked in the loss)
        rules.append(("no_next_event_within_max_gap", pl.col("label_next_event").is_not_null()))
    if sampling.holdout_user_fraction > 0:
        held_out = (pl.col("user_key") % 10_000) < round(sampling.holdout_user_fraction * 10_000)
        rules.append(("holdout_users", (pl.col("split") == "train") != held_out))
    return rules


def apply_eligibility(
    samples: pl.DataFrame, task: Task, sampling: SamplingConfig
) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """Drop ineligible samples, counting each under the first rule it fails, per split.

    The rules are evaluated into one small column and the list-heavy frame is filtered at most
    once (copying it per rule cost seconds at 10M events).
    """
    rules = eligibility_rules(task, sampling)
    failed = pl.coalesce([pl.when(~keep).then(pl.lit(name)) for name, keep in rules])
    verdict = samples.select("split", failed.alias("failed"))
    counts = verdict.filter(pl.col("failed").is_not_null()).group_by("failed", "split").len()
    dropped: dict[str, dict[str, int]] = {name: {} for name, _ in rules}
    for name, split, n in counts.iter_rows():
        dropped[name][split] = n
    if counts.height:
        samples = samples.filter(verdict["failed"].is_null())
    return samples, dropped


def split_sums(samples: pl.DataFrame, task: Task) -> dict[str, dict[str, float]]:
    """Per split: samples, users, total history events and label sums (all additive; users
    are additive across shards because a user lives in exactly one shard)."""
    labels = [pl.col(f"label_{t}").sum().alias(f"positives/{t}") for t in task.targets]
    if next_event_part(task) is not None:
        labels += [
            pl.col("label_next_hours").sum().alias("hours_to_next_event_sum"),
            pl.col("label_next_hours").is_not_null().sum().alias("with_next_event"),
        ]
    rows = samples.group_by("split").agg(
        pl.len().alias("samples"),
        pl.col("user_key").n_unique().alias("users"),
        pl.col("n_history").sum().alias("history_events"),
        *labels,
    )
    return {row.pop("split"): row for row in rows.to_dicts()}


def add_nested(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Sum two-level dicts key by key: how shard statistics (split sums, eligibility drops,
    token counts, numeric moments) become the statistics of the whole table."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for outer, values in part.items():
            target = merged.setdefault(outer, {})
            for key, value in values.items():
                target[key] = target.get(key, 0) + value
    return merged


def split_report(
    sums: dict[str, dict[str, float]], task: Task, plan: CutoffPlan
) -> dict[str, dict[str, float]]:
    """Readable per-split figures; refuses empty splits and targets without a positive."""
    report = {}
    for split in SPLITS:
        values = sums.get(split, {})
        n = int(values.get("samples", 0))
        if n == 0:
            raise ValueError(
                f"the {split} split is empty (cutoffs {plan.to_dict()[split]}); lower "
                "min_history_events / active_within or move the cutoffs"
            )
        row: dict[str, float] = {
            "samples": n,
            "users": int(values["users"]),
            "cutoffs": len(getattr(plan, split)),
            "mean_history_events": values["history_events"] / n,
        }
        for target in task.targets:
            positives = int(values[f"positives/{target}"])
            if positives == 0:
                raise ValueError(
                    f"no positive label for target {target!r} in the {split} split ({n} "
                    f"samples, cutoffs {plan.to_dict()[split]}): its metrics would be "
                    "undefined. Use a longer horizon, other cutoffs or more data."
                )
            row[f"positive_rate/{target}"] = positives / n
        if next_event_part(task) is not None:
            with_next = values["with_next_event"]
            row["with_next_event"] = int(with_next)
            row["mean_hours_to_next_event"] = values["hours_to_next_event_sum"] / max(with_next, 1)
        report[split] = row
    return report
