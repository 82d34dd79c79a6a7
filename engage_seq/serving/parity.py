"""Parity harness: the artifact's two entry points against training, and against each other.

Checked at every export (a failing artifact is never written) and, at full size, in tests:

* golden users (test samples whose whole history fits in ``max_len``, saved by engage-train):
  the raw entry point fed with their raw events must reproduce both the training inputs and
  the Lightning predictions, at batch size N and 1;
* constructed users built from them, for the cases that break hand-written preprocessing: a
  single event, more than ``max_len`` events, unseen categories and missing values, events
  exactly at and after the cutoff, ties in time. Their reference is the training code itself
  (`engage_seq.data.encoding.encode_events_at_cutoff`) fed to the tensor entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import torch

from engage_seq.data.encoding import (
    Vocabulary,
    encode_events_at_cutoff,
    ordered_numeric_scaling,
)
from engage_seq.data.schema import ROW_INDEX, ColumnMapping, to_canonical
from engage_seq.models.engagement import MODEL_INPUTS
from engage_seq.serving.aggregate_metadata import served_aggregates
from engage_seq.serving.contract import ArtifactMetadata

UNSEEN = "__never_seen_in_training__"


def raw_arguments(
    events: pl.DataFrame, categorical: list[str], numeric: list[str], user: str = "sample"
) -> tuple[list[Any], ...]:
    """One row per event (``user``, ``cutoff``, ``ts``, ``event_type``, ``channel``, ``cat_*``,
    ``num_*``) -> the arguments of ``predict_events``, users in first-appearance order, events
    in row order (the artifact sorts by time itself, keeping ties in this order)."""
    users = events.group_by(user, maintain_order=True).agg(
        pl.col("cutoff").first(),
        pl.col("ts"),
        pl.col("event_type"),
        pl.col("channel"),
        *[pl.col(c) for c in categorical],
        *[pl.col(c).cast(pl.Float64) for c in numeric],
    )
    event_types = users["event_type"].to_list()
    timestamps = [torch.tensor(ts, dtype=torch.long) for ts in users["ts"].to_list()]
    channels = users["channel"].to_list()
    columns = {c: users[c].to_list() for c in categorical}
    attributes = [[columns[c][i] for c in categorical] for i in range(users.height)]
    values = {c: users[c].to_list() for c in numeric}
    numeric_rows = [
        torch.tensor(
            [[float("nan") if v is None else v for v in values[c][i]] for c in numeric],
            dtype=torch.float64,
        )
        .reshape(len(numeric), len(event_types[i]))
        .T.contiguous()
        for i in range(users.height)
    ]
    cutoffs = torch.tensor(users["cutoff"].to_list(), dtype=torch.long)
    return event_types, timestamps, channels, attributes, numeric_rows, cutoffs


def _take(arguments: tuple[list[Any], ...], rows: list[int]) -> tuple[Any, ...]:
    *lists, cutoffs = arguments
    return (*[[values[i] for i in rows] for values in lists], cutoffs[rows])


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference; inf for different shapes or any NaN (never hidden)."""
    if a.shape != b.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().nan_to_num(nan=float("inf")).max())


def _inputs_diff(found: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> float:
    """Largest difference between two sets of model inputs, trimmed to the same width (ids
    that differ count as inf); the aggregates (one row per user) are compared whole."""
    width = int(expected[5].max())
    worst = max(max_diff(found[5], expected[5]), max_diff(found[6], expected[6]))
    for name, a, b in zip(MODEL_INPUTS[:5], found[:5], expected[:5], strict=True):
        a, b = a[:, :width], b[:, :width]
        diff = max_diff(a, b)
        worst = max(worst, float("inf") if name.endswith("ids") and diff > 0 else diff)
    return worst


def check_golden_users(
    scripted: Any,
    golden: dict[str, torch.Tensor],
    events: pl.DataFrame,
    metadata: ArtifactMetadata,
    n_single: int = 8,
) -> dict[str, float]:
    """Raw entry on the golden users' raw events vs the training inputs and predictions
    (``complete_*`` entries of the golden batch; ``sample`` indexes them)."""
    if events.is_empty():
        return {}
    arguments = raw_arguments(events, metadata.categorical_attributes, metadata.numeric_attributes)
    rows = events["sample"].unique(maintain_order=True).to_list()
    expected_inputs = tuple(golden[f"complete_{name}"][rows] for name in MODEL_INPUTS)
    n = min(n_single, len(rows))
    with torch.inference_mode():
        inputs = scripted.preprocess_events(*arguments)
        probabilities = scripted.predict_events(*arguments)
        singles = [scripted.predict_events(*_take(arguments, [i])) for i in range(n)]
    return {
        "raw_inputs_vs_training": _inputs_diff(inputs, expected_inputs),
        "raw_vs_lightning": max_diff(probabilities, golden["complete_probabilities"][rows]),
        "raw_batch1_vs_batchN": max_diff(torch.cat(singles), probabilities[:n]),
    }


def _unseen_and_missing(base: pl.DataFrame) -> pl.DataFrame:
    """The base user with unseen event types, channels and categories, missing categories and
    missing or non-finite numerics (null, inf, -inf, NaN), spread over its events."""
    return base.with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0)
        .then(pl.lit(UNSEEN))
        .otherwise(pl.col("event_type"))
        .alias("event_type"),
        pl.when(pl.int_range(pl.len()) % 3 == 0)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.lit(UNSEEN))
        .alias("channel"),
        *[
            pl.when(pl.int_range(pl.len()) % 3 == 1)
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(pl.lit(UNSEEN))
            .alias(c)
            for c in base.columns
            if c.startswith("cat_")
        ],
        *[
            pl.int_range(pl.len())
            .replace_strict(
                {0: None, 1: float("inf"), 2: float("-inf")},
                default=float("nan"),
                return_dtype=pl.Float64,
            )
            .alias(c)
            for c in base.columns
            if c.startswith("num_")
        ],
    )


def edge_case_events(events: pl.DataFrame, max_len: int) -> pl.DataFrame:
    """Constructed users from the golden events (``user`` names the case). Each keeps the
    golden user's cutoff; none of them changes what the reference code is asked to do."""
    sizes = events.group_by("sample", maintain_order=True).len()
    several = sizes.filter(pl.col("len") >= 2)["sample"]
    base_sample = several[0] if several.len() else sizes["sample"][0]
    base = events.filter(pl.col("sample") == base_sample).drop("sample")
    cutoff = int(base["cutoff"][0])
    span = int(base["ts"].max() - base["ts"].min()) + 86_400
    copies = max_len // base.height + 2  # well past max_len, older copies shifted back in time
    long = pl.concat(
        [base.with_columns(pl.col("ts") - (copies - 1 - i) * span) for i in range(copies)]
    )
    unseen = _unseen_and_missing(base)
    late = base.tail(1)
    at_cutoff = pl.concat(
        [
            base,
            late.with_columns(pl.lit(cutoff, dtype=pl.Int64).alias("ts")),
            late.with_columns(pl.lit(cutoff + 60, dtype=pl.Int64).alias("ts")),
        ]
    )
    tie = base.tail(1).with_columns(pl.lit(UNSEEN).alias("event_type"))
    ties = pl.concat([base.head(base.height - 1), tie, base.tail(1)])
    cases = {
        "base": base,
        "single_event": base.tail(1),
        "longer_than_max_len": long,
        "unseen_and_missing": unseen,
        "events_at_and_after_cutoff": at_cutoff,
        "tied_timestamps": ties,
    }
    return pl.concat(
        [
            frame.with_columns(pl.lit(name).alias("user"), pl.col("ts").cast(pl.Int64)).select(
                "user", *base.columns
            )
            for name, frame in cases.items()
        ],
        how="vertical_relaxed",
    )


def _through_ingest(
    cases: pl.DataFrame, categorical: list[str], numeric: list[str]
) -> pl.LazyFrame:
    """The constructed users as a raw table read by training's own ingest mapping
    (`to_canonical`: missing channels/categories -> the missing token, non-finite numerics ->
    missing), so the reference applies training's rules rather than a copy of them."""
    table = cases.select(
        pl.col("user").alias("user_id"),
        pl.col("ts").alias("timestamp"),
        "event_type",
        "channel",
        *[pl.col(c).alias(c.removeprefix("cat_")) for c in categorical],
        *[pl.col(c).alias(c.removeprefix("num_")) for c in numeric],
    )
    mapping = ColumnMapping(
        categorical=tuple(c.removeprefix("cat_") for c in categorical),
        numeric=tuple(c.removeprefix("num_") for c in numeric),
        epoch_unit="s",
    )
    canonical = to_canonical(table.lazy(), mapping, "constructed edge cases")
    return canonical.with_columns(pl.col("user_id").alias("user_key")).select(
        ROW_INDEX, "user_key", "ts", "event_type", "channel", *categorical, *numeric
    )


def check_edge_cases(
    scripted: Any, events: pl.DataFrame, metadata: ArtifactMetadata
) -> dict[str, float]:
    """Raw entry vs the training code on constructed users (one figure per case), plus
    "events at and after the cutoff are ignored" (same score as without them)."""
    if events.is_empty():
        return {}
    categorical = metadata.categorical_attributes
    numeric = metadata.numeric_attributes
    cases = edge_case_events(events, metadata.max_len)
    names = cases["user"].unique(maintain_order=True).to_list()
    arguments = raw_arguments(cases, categorical, numeric, user="user")
    canonical = _through_ingest(cases, categorical, numeric)
    cutoff = int(cases["cutoff"][0])
    vocabulary = Vocabulary.from_lists(metadata.vocabulary, categorical)
    aggregates = served_aggregates(metadata)
    keys, encoded = encode_events_at_cutoff(
        canonical,
        cutoff,
        vocabulary,
        ordered_numeric_scaling(metadata.numeric_scaling, numeric),
        metadata.max_len,
        aggregates.targets,
        aggregates.scaling,
    )
    order = {key: i for i, key in enumerate(keys.to_list())}
    reference = encoded.batch(torch.tensor([order[name] for name in names]).numpy())[:7]
    results: dict[str, float] = {}
    with torch.inference_mode():
        raw_inputs = scripted.preprocess_events(*arguments)
        raw = scripted.predict_events(*arguments)
        expected = scripted(*reference)
        for i, name in enumerate(names):
            one = tuple(t[i : i + 1] for t in raw_inputs)
            ref = tuple(t[i : i + 1] for t in reference)
            results[f"edge/{name}"] = max(
                _inputs_diff(one, ref), max_diff(raw[i : i + 1], expected[i : i + 1])
            )
    base, late = names.index("base"), names.index("events_at_and_after_cutoff")
    results["edge/cutoff_events_ignored"] = max_diff(raw[late], raw[base])
    return results


def full_parity(
    scripted: Any,
    golden: dict[str, torch.Tensor],
    events: pl.DataFrame,
    metadata: ArtifactMetadata,
) -> dict[str, float]:
    """Every raw-entry figure (max abs differences; inf where ids or shapes differ)."""
    return {
        **check_golden_users(scripted, golden, events, metadata),
        **check_edge_cases(scripted, events, metadata),
    }


def check_parity(
    scripted: torch.jit.ScriptModule,
    eager: torch.nn.Module,
    golden: dict[str, torch.Tensor],
    n_single: int = 8,
) -> dict[str, float]:
    """Tensor entry: max abs differences scripted vs eager vs Lightning, batch 1 vs batch N."""
    inputs = [golden[name] for name in MODEL_INPUTS]
    lengths = golden["lengths"]
    with torch.inference_mode():
        eager_probs = eager(*inputs)
        scripted_probs = scripted(*inputs)
        singles = []
        for i in range(min(n_single, lengths.shape[0])):
            width = int(lengths[i])
            singles.append(scripted(*one_row(inputs, i, width)))
    return {
        "eager_vs_lightning": max_diff(eager_probs, golden["probabilities"]),
        "torchscript_vs_eager": max_diff(scripted_probs, eager_probs),
        "batch1_vs_batchN": max_diff(torch.cat(singles), scripted_probs[: len(singles)]),
    }


def one_row(inputs: Sequence[torch.Tensor], i: int, width: int) -> list[torch.Tensor]:
    """Row ``i`` of the MODEL_INPUTS tensors, its per-event inputs cut to ``width`` events
    (lengths and aggregates have no event axis)."""
    per_event = len(MODEL_INPUTS) - 2
    return [t[i : i + 1, :width] if k < per_event else t[i : i + 1] for k, t in enumerate(inputs)]
