"""Samples -> dense, right-padded arrays (numpy): shared by training and batch scoring.

Padding contract (serving must reproduce it exactly): sequences are **right-padded**, oldest
event first, the last real event at index ``length - 1``; id 0 is padding and id 1 unknown.
Truncation keeps the most recent ``max_len`` events (done by the sample builder).

Torch-free at import (``EncodedSamples.batch`` imports it when called), so ``engage-score``
encodes events without Lightning, through the very code that encoded the training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from engage_seq.data.aggregates import standardised_aggregates, with_aggregates
from engage_seq.data.sequences import TIME_FEATURES, clean_events, samples_at_cutoff, user_histories
from engage_seq.data.vocabulary import signed_log1p

if TYPE_CHECKING:
    import torch

PAD_ID = 0
UNKNOWN_ID = 1


@dataclass(frozen=True)
class Vocabulary:
    """Token -> id maps fitted on the training period; ids start at 2 (0 pad, 1 unknown).

    ``tokens`` maps each categorical column (event_type, channel, then ``cat_*`` attributes,
    in that order) to its sorted known values.
    """

    tokens: dict[str, tuple[str, ...]]

    @classmethod
    def from_lists(
        cls, fitted: Mapping[str, Sequence[str]], attributes: Sequence[str]
    ) -> Vocabulary:
        """A vocabulary whose attribute order is ``attributes``, never the mapping's key order.

        The order of the categorical attributes is the order of the model's ``attribute_ids``
        axis. JSON files (the cache manifest, the artifact's ``metadata.json``) store the
        token lists key-sorted, so taking their key order would look ids up in another
        attribute's vocabulary; the explicit list (``categorical_attributes``) is the contract.
        """
        expected = ["event_type", "channel", *attributes]
        if sorted(fitted) != sorted(expected) or len(set(expected)) != len(expected):
            raise ValueError(
                f"vocabulary columns {sorted(fitted)} do not match event_type, channel and the "
                f"categorical attributes {list(attributes)}; the metadata is inconsistent: "
                "re-export the artifact (or delete the sample cache entry)"
            )
        return cls({column: tuple(fitted[column]) for column in expected})

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Vocabulary:
        """The vocabulary of a checkpoint's or artifact's metadata, in the model's order."""
        return cls.from_lists(metadata["vocabulary"], metadata["categorical_attributes"])

    @property
    def n_event_ids(self) -> int:
        return len(self.tokens["event_type"]) + 2

    @property
    def n_channel_ids(self) -> int:
        return len(self.tokens["channel"]) + 2

    @property
    def attributes(self) -> list[str]:
        return attribute_order(self.tokens)

    @property
    def attribute_sizes(self) -> list[int]:
        return [len(self.tokens[c]) + 2 for c in self.attributes]

    def ids(self, column: str) -> dict[str, int]:
        return {token: i + 2 for i, token in enumerate(self.tokens[column])}

    def to_dict(self) -> dict[str, list[str]]:
        return {column: list(values) for column, values in self.tokens.items()}


def attribute_order(vocabulary: Mapping[str, Sequence[str]]) -> list[str]:
    """The categorical attributes of a freshly fitted vocabulary (insertion order = the
    declared column order; only valid before any JSON round trip)."""
    return [column for column in vocabulary if column not in ("event_type", "channel")]


def ordered_numeric_scaling(
    scaling: Mapping[str, Mapping[str, float]], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Numeric scaling statistics in the order of ``names`` (the model's ``numeric`` axis).

    Like `Vocabulary.from_lists`: a JSON round trip sorts the keys, so the order must come
    from the explicit list (``numeric_attributes``), never from the mapping.
    """
    if sorted(scaling) != sorted(names) or len(set(names)) != len(names):
        raise ValueError(
            f"numeric scaling for {sorted(scaling)} does not match the numeric attributes "
            f"{list(names)}; the metadata is inconsistent: re-export the artifact (or delete "
            "the sample cache entry)"
        )
    return {name: {"mean": scaling[name]["mean"], "std": scaling[name]["std"]} for name in names}


def numeric_scaling_from_metadata(metadata: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A checkpoint's or artifact's numeric scaling, in the model's order."""
    return ordered_numeric_scaling(metadata["numeric_scaling"], metadata["numeric_attributes"])


@dataclass
class EncodedSamples:
    """Dense arrays for one split: N samples, T = max_len, C categorical attributes,
    F numeric attributes, K time features, A full-history aggregates (0: off), L labels."""

    event_ids: np.ndarray  # (N, T) int64, 0 = pad
    channel_ids: np.ndarray  # (N, T) int64, 0 = pad
    attribute_ids: np.ndarray  # (N, T, C) int64, 0 = pad
    numeric: np.ndarray  # (N, T, F) float32, scaled, 0 at pads and for missing values
    time_features: np.ndarray  # (N, T, K) float32, 0 at pads
    lengths: np.ndarray  # (N,) int64, >= 1
    labels: np.ndarray  # (N, L) float32
    aggregates: np.ndarray | None = None  # (N, A) float32, standardised; None = (N, 0)

    def __post_init__(self) -> None:
        if self.aggregates is None:
            self.aggregates = np.zeros((self.lengths.shape[0], 0), dtype=np.float32)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Tensors for ``indices``, trimmed to the longest sequence among them:
        (event_ids, channel_ids, attribute_ids, numeric, time_features, lengths, aggregates,
        labels): the model's inputs in `MODEL_INPUTS` order, then the labels."""
        import torch

        assert self.aggregates is not None  # set in __post_init__
        width = int(self.lengths[indices].max())
        return (
            torch.from_numpy(self.event_ids[indices, :width]),
            torch.from_numpy(self.channel_ids[indices, :width]),
            torch.from_numpy(self.attribute_ids[indices, :width]),
            torch.from_numpy(self.numeric[indices, :width]),
            torch.from_numpy(self.time_features[indices, :width]),
            torch.from_numpy(self.lengths[indices]),
            torch.from_numpy(self.aggregates[indices]),
            torch.from_numpy(self.labels[indices]),
        )


def _pad_lists(column: pl.Series, lengths: np.ndarray, width: int, dtype: type) -> np.ndarray:
    """List column -> (N, width) right-padded array, without a Python loop over rows."""
    flat = column.explode().to_numpy().astype(dtype, copy=False)
    rows = np.repeat(np.arange(lengths.size), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(flat.size) - np.repeat(starts, lengths)
    out = np.zeros((lengths.size, width), dtype=dtype)
    out[rows, cols] = flat
    return out


def _stack(arrays: list[np.ndarray], n: int, width: int, dtype: type) -> np.ndarray:
    if not arrays:
        return np.zeros((n, width, 0), dtype=dtype)
    return np.stack(arrays, axis=-1)


NO_NEXT_EVENT = -1.0  # next-event class when a sample has none within max_gap (masked)


def label_expr(column: str, vocabulary: Vocabulary) -> pl.Expr:
    """Label column -> float32. The next event type becomes its class: event id - 1, so
    class 0 is an unknown type and class i is ``vocabulary.tokens["event_type"][i - 1]``;
    a missing next event becomes -1 and a missing time NaN (both masked in the loss)."""
    if column == "label_next_event":
        ids = pl.col(column).replace_strict(
            vocabulary.ids("event_type"), default=UNKNOWN_ID, return_dtype=pl.Int64
        )
        return (
            pl.when(pl.col(column).is_null())
            .then(pl.lit(NO_NEXT_EVENT))
            .otherwise(ids - 1)
            .cast(pl.Float32)
            .alias(column)
        )
    return pl.col(column).cast(pl.Float32).fill_null(float("nan"))


def next_event_classes(vocabulary: Vocabulary) -> list[str]:
    """Names of the next-event classes, in output order (see `label_expr`)."""
    return ["<unknown>", *vocabulary.tokens["event_type"]]


def encode_samples(
    samples: pl.DataFrame,
    vocabulary: Vocabulary,
    max_len: int,
    label_columns: Sequence[str],
    numeric_scaling: dict[str, dict[str, float]] | None = None,
    aggregate_scaling: dict[str, dict[str, float]] | None = None,
) -> EncodedSamples:
    """Map tokens to ids (unknown -> 1), scale numerics, pad; input from `build_samples`.

    Numeric attributes become ``clip((signed_log1p(x) - mean) / std, -5, 5)`` with training-
    period statistics; missing values become 0 (the training mean). ``aggregate_scaling``
    (ordered; empty or None: the model reads no aggregates) standardises the samples'
    full-history aggregates (`engage_seq.data.aggregates`).
    """
    numeric_scaling = numeric_scaling or {}
    lengths = samples["event_type"].list.len().to_numpy().astype(np.int64)
    if lengths.size and (lengths.min() < 1 or lengths.max() > max_len):
        raise ValueError(
            f"sequence lengths must be within [1, {max_len}], got [{lengths.min()}, "
            f"{lengths.max()}]; were the samples built with this max_len?"
        )
    ids = samples.select(
        pl.col(column).list.eval(
            pl.element().replace_strict(
                vocabulary.ids(column), default=UNKNOWN_ID, return_dtype=pl.Int64
            )
        )
        for column in vocabulary.tokens
    )
    scaled = samples.select(
        pl.col(column).list.eval(
            ((signed_log1p(pl.element()) - stats["mean"]) / stats["std"])
            .clip(-5.0, 5.0)
            .fill_null(0.0)
            .fill_nan(0.0)
            .cast(pl.Float32)
        )
        for column, stats in numeric_scaling.items()
    )
    n = lengths.size

    def pad(column: pl.Series, dtype: type) -> np.ndarray:
        return _pad_lists(column, lengths, max_len, dtype)

    labels = samples.select(label_expr(c, vocabulary) for c in label_columns).to_numpy()
    attributes = [pad(ids[c], np.int64) for c in vocabulary.attributes]
    numerics = [pad(scaled[c], np.float32) for c in scaled.columns]
    times = [pad(samples[c], np.float32) for c in TIME_FEATURES]
    return EncodedSamples(
        event_ids=pad(ids["event_type"], np.int64),
        channel_ids=pad(ids["channel"], np.int64),
        attribute_ids=_stack(attributes, n, max_len, np.int64),
        numeric=_stack(numerics, n, max_len, np.float32),
        time_features=_stack(times, n, max_len, np.float32),
        lengths=lengths,
        labels=np.ascontiguousarray(labels, dtype=np.float32).reshape(n, len(label_columns)),
        aggregates=standardised_aggregates(samples, aggregate_scaling or {}),
    )


def encode_events_at_cutoff(
    events: pl.LazyFrame,
    cutoff: int,
    vocabulary: Vocabulary,
    numeric_scaling: dict[str, dict[str, float]],
    max_len: int,
    aggregate_targets: Sequence[str] = (),
    aggregate_scaling: dict[str, dict[str, float]] | None = None,
) -> tuple[pl.Series, EncodedSamples]:
    """Canonical events (``user_key``, ``ts``, ``event_type``, ``channel``, ``cat_*``,
    ``num_*``) -> model inputs at ``cutoff`` for every user with an event before it, through
    the very functions that built the training samples (`user_histories`,
    `samples_at_cutoff`, `with_aggregates`, `encode_samples`). Returns the user keys in row
    order and the arrays. Aggregates (of the task's ``aggregate_targets``) are computed only
    when ``aggregate_scaling`` names some.
    """
    samples = samples_at_cutoff(user_histories(events), None, cutoff, "score", max_len)
    if aggregate_scaling:
        numeric = list(numeric_scaling)
        samples = with_aggregates(samples, clean_events(events), cutoff, aggregate_targets, numeric)
    frame = samples.collect()
    encoded = encode_samples(
        frame, vocabulary, max_len, (), numeric_scaling, aggregate_scaling=aggregate_scaling
    )
    return frame["user_key"], encoded
