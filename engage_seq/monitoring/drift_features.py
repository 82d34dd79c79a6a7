"""What is compared: each feature of one side as a lazy one-column frame ``value``.

Features (see the `engage_seq.monitoring.drift` docstring for why each is counted as it is):
``event_type``, ``channel``, ``cat_<column>`` (categorical), ``sequence_length``,
``gap_hours``, ``num_<column>`` (binned), and with an artifact its scores, ``score_<target>``
(binned) and ``score_next_event`` (categorical). Torch is loaded only to score, lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from engage_seq.common.times import format_instant
from engage_seq.data.schema import looks_like_identifier
from engage_seq.monitoring.drift_inputs import DriftInput
from engage_seq.monitoring.errors import DriftError
from engage_seq.serving.contract import ArtifactMetadata  # standard library only: no torch

DATA_CATEGORICALS = ("event_type", "channel")  # plus cat_<column>: checked for identifiers

Values = dict[str, tuple[str, pl.LazyFrame]]  # feature -> (kind, one-column frame "value")


def feature_values(table: DriftInput) -> Values:
    """Per feature: its kind and a lazy one-column frame ``value`` (one row per event, user
    or sample, as the feature counts)."""
    frame = table.frame.lazy()
    names = table.frame.columns
    categorical = ["event_type", "channel", *[c for c in names if c.startswith("cat_")]]
    numeric = [c for c in names if c.startswith("num_")]
    out: Values = {}
    if table.kind == "samples":
        for column in categorical:
            out[column] = ("categorical", frame.select(pl.col(column).explode().alias("value")))
        out["sequence_length"] = ("binned", frame.select(pl.col("n_history").alias("value")))
        # the history reaches back to the user's first event when none was truncated away;
        # that event's log_gap_h is a placeholder 0, not a gap (event tables have no row for it)
        gaps = pl.col("log_gap_h")
        from_first = pl.col("n_history") == gaps.list.len()
        gaps = pl.when(from_first).then(gaps.list.slice(1)).otherwise(gaps)
        hours = gaps.explode().cast(pl.Float64).exp() - 1.0
        out["gap_hours"] = ("binned", frame.select(hours.alias("value")).drop_nulls())
        for column in numeric:
            out[column] = ("binned", frame.select(pl.col(column).explode().alias("value")))
        return out
    for column in categorical:
        out[column] = ("categorical", frame.select(pl.col(column).alias("value")))
    out["sequence_length"] = ("binned", frame.group_by("user_key").agg(pl.len().alias("value")))
    ordered = frame.sort(["user_key", "ts", "_row"])
    gap = (pl.col("ts").diff().over("user_key") / 3600.0).alias("value")
    out["gap_hours"] = ("binned", ordered.select(gap).drop_nulls())
    for column in numeric:
        out[column] = ("binned", frame.select(pl.col(column).alias("value")))
    return out


def score_values(table: DriftInput, module: Any, meta: ArtifactMetadata) -> dict[str, Any]:
    """Per artifact output: a lazy ``value`` frame of the table's scores (see the module
    docstring for the cutoffs), and the cutoff or cutoffs used."""
    from engage_seq.data.encoding import (
        Vocabulary,
        encode_events_at_cutoff,
        encode_samples,
        ordered_numeric_scaling,
    )
    from engage_seq.serving.aggregate_metadata import served_aggregates
    from engage_seq.serving.scoring import predict_in_batches

    vocabulary = Vocabulary.from_lists(meta.vocabulary, meta.categorical_attributes)
    scaling = ordered_numeric_scaling(meta.numeric_scaling, meta.numeric_attributes)
    max_len = meta.max_len
    aggregates = served_aggregates(meta)
    if table.kind == "samples":
        wanted = [*vocabulary.tokens, *scaling, *(f"agg_{name}" for name in aggregates.scaling)]
        missing = [c for c in wanted if c not in table.frame.columns]
        longest = int(table.frame["event_type"].list.len().max() or 0)
        if missing or longest > max_len:
            raise DriftError(
                f"{table.where}: these samples do not fit the artifact (missing columns "
                f"{missing}, longest history {longest} vs max_len {max_len}); build them with "
                "the artifact's data settings or compare event tables instead"
            )
        encoded = encode_samples(
            table.frame, vocabulary, max_len, (), scaling, aggregate_scaling=aggregates.scaling
        )
        cutoff = "per sample"
    else:
        assert table.history is not None
        at = int(table.frame["ts"].max()) + 1
        _, encoded = encode_events_at_cutoff(
            table.history.lazy(),
            at,
            vocabulary,
            scaling,
            max_len,
            aggregates.targets,
            aggregates.scaling,
        )
        cutoff = format_instant(at)
    probabilities, _ = predict_in_batches(module, encoded)
    names = list(meta.output_names)
    out: dict[str, Any] = {"cutoff": cutoff, "features": {}}
    for i, name in enumerate(names):
        if not name.startswith("next_event/"):
            values = pl.LazyFrame({"value": probabilities[:, i].astype(np.float64)})
            out["features"][f"score_{name}"] = ("binned", values)
    classes = [i for i, name in enumerate(names) if name.startswith("next_event/")]
    if classes:
        best = np.asarray(names)[classes][probabilities[:, classes].argmax(axis=1)]
        out["features"]["score_next_event"] = ("categorical", pl.LazyFrame({"value": best}))
    return out


def mostly_missing(values: pl.LazyFrame) -> bool:
    """More than half the rows null: e.g. an order value, set on purchases only. Its nulls
    then dominate the histogram, so a change in the values themselves barely moves the PSI;
    `add_present_values` adds the present values as a feature of their own."""
    share = values.select(pl.col("value").is_null().mean()).collect().item()
    return share is not None and share > 0.5


def add_present_values(reference: Values, current: Values) -> None:
    """For each numeric feature whose reference is mostly null, add ``<name>:present``: its
    values where present on both sides (in place)."""
    for name in [n for n in reference if n.startswith("num_") and n in current]:
        if mostly_missing(reference[name][1]):
            present = pl.col("value").is_not_null()
            reference[f"{name}:present"] = ("binned", reference[name][1].filter(present))
            current[f"{name}:present"] = ("binned", current[name][1].filter(present))


def refuse_identifiers(table: DriftInput, values: Values) -> None:
    """Raise `DriftError` for a data categorical (event type, channel, declared attribute)
    with about one value per user: its top categories would be identifiers in drift.json,
    and its PSI would only say that two sets of users differ."""
    columns = [n for n in values if n in DATA_CATEGORICALS or n.startswith("cat_")]
    if not columns:
        return
    users = int(table.summary["users"])
    distinct = pl.collect_all([values[n][1].select(pl.col("value").n_unique()) for n in columns])
    counts = {n: int(frame.item()) for n, frame in zip(columns, distinct, strict=True)}
    suspicious = [n for n in columns if looks_like_identifier(counts[n], users)]
    if suspicious:
        named = ", ".join(f"{_column_name(n)} ({counts[n]:,} values)" for n in suspicious)
        raise DriftError(
            f"{table.where}: categorical column(s) {named} for {users:,} users look like "
            "identifiers (about one value per user), whose values must not reach drift.json/md; "
            "drop them from --categorical (or compare a coarser column)"
        )


def _column_name(feature: str) -> str:
    """The table's column behind a feature, as the user named it (cat_email -> 'email')."""
    return repr(feature.removeprefix("cat_")) if feature.startswith("cat_") else feature
