"""The artifact metadata a trained module carries: what serving needs to rebuild its inputs,
and what the run was trained on."""

from __future__ import annotations

from typing import Any

from engage_seq.data.aggregates import AGGREGATE_DEFINITIONS
from engage_seq.data.schema import NO_CHANNEL
from engage_seq.data.sequences import FEATURE_DEFINITIONS, TIME_FEATURES, Task
from engage_seq.data.tasks import horizon_part, next_event_part
from engage_seq.training.batches import Vocabulary, next_event_classes


def output_names(task: Task, vocabulary: Vocabulary) -> list[str]:
    """Artifact columns: horizon targets, then ``next_event/<type>`` per next-event class."""
    names = list(task.targets)
    if next_event_part(task) is not None:
        names += [f"next_event/{c}" for c in next_event_classes(vocabulary)]
    return names


def data_metadata(
    task: Task,
    prepared: Any,
    vocabulary: Vocabulary,
    max_len: int,
    column_mapping: dict[str, Any] | None = None,
    aggregate_scaling: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """What serving needs to rebuild inputs, and what the run was trained on.
    ``aggregate_scaling`` (ordered; empty: none) is the hybrid model's aggregates."""
    horizon, next_event = horizon_part(task), next_event_part(task)
    return {
        "vocabulary": vocabulary.to_dict(),
        "categorical_attributes": vocabulary.attributes,
        "numeric_attributes": list(prepared.numeric_scaling),  # the order of numeric's last axis
        "numeric_scaling": prepared.numeric_scaling,
        "time_features": list(TIME_FEATURES),
        "feature_definitions": FEATURE_DEFINITIONS,
        "missing_category_token": NO_CHANNEL,  # what a null channel/category was read as
        "column_mapping": column_mapping,  # how engage-score reads a raw table like training's
        "max_len": max_len,
        "padding": "right",
        "truncation": "keep_most_recent",
        "task": {
            "type": type(task).__name__,
            "name": task.name,
            "targets": list(task.targets),
            "horizon": horizon.horizon if horizon else None,
            "horizon_seconds": horizon.horizon_seconds if horizon else None,
            "next_event_max_gap": next_event.max_gap if next_event else None,
            "next_event_classes": next_event_classes(vocabulary) if next_event else [],
        },
        "cutoffs": prepared.plan.to_dict(),
        "data_fingerprint": prepared.cache_dir.name,
        "aggregate_names": list(aggregate_scaling or {}),  # the order of aggregates' last axis
        "aggregate_scaling": dict(aggregate_scaling or {}),
        "aggregate_definitions": AGGREGATE_DEFINITIONS if aggregate_scaling else {},
    }
