"""Samples -> padded tensors -> batches.

Padding contract (serving must reproduce it exactly): sequences are **right-padded**, oldest
event first, the last real event at index ``length - 1``; id 0 is padding and id 1 unknown.
Truncation keeps the most recent ``max_len`` events (done by the sample builder).

Samples are encoded to dense arrays once; a batch is a fancy-index into them, trimmed to the
longest sequence in the batch, so there is no per-sample Python in the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from engage_seq.sequences import TIME_FEATURES

PAD_ID = 0
UNKNOWN_ID = 1
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Vocabulary:
    """Token -> id maps fitted on the training period; ids start at 2 (0 pad, 1 unknown)."""

    event_types: tuple[str, ...]
    channels: tuple[str, ...]

    @classmethod
    def from_lists(cls, fitted: dict[str, list[str]]) -> Vocabulary:
        return cls(tuple(fitted["event_type"]), tuple(fitted["channel"]))

    @property
    def n_event_ids(self) -> int:
        return len(self.event_types) + 2

    @property
    def n_channel_ids(self) -> int:
        return len(self.channels) + 2

    def to_dict(self) -> dict[str, list[str]]:
        return {"event_type": list(self.event_types), "channel": list(self.channels)}


@dataclass
class EncodedSamples:
    """Dense arrays for one split; N samples, T = max_len, K time features, L labels."""

    event_ids: np.ndarray  # (N, T) int64, 0 = pad
    channel_ids: np.ndarray  # (N, T) int64, 0 = pad
    time_features: np.ndarray  # (N, T, K) float32, 0 at pads
    lengths: np.ndarray  # (N,) int64, >= 1
    labels: np.ndarray  # (N, L) float32

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(self, indices: np.ndarray) -> Batch:
        """Tensors for ``indices``, trimmed to the longest sequence among them."""
        width = int(self.lengths[indices].max())
        return (
            torch.from_numpy(self.event_ids[indices, :width]),
            torch.from_numpy(self.channel_ids[indices, :width]),
            torch.from_numpy(self.time_features[indices, :width]),
            torch.from_numpy(self.lengths[indices]),
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


def encode_samples(
    samples: pl.DataFrame,
    vocabulary: Vocabulary,
    max_len: int,
    label_columns: Sequence[str],
) -> EncodedSamples:
    """Map tokens to ids (unknown -> 1) and pad; samples come from `sequences.build_samples`."""
    event_map = {tok: i + 2 for i, tok in enumerate(vocabulary.event_types)}
    channel_map = {tok: i + 2 for i, tok in enumerate(vocabulary.channels)}
    ids = samples.select(
        pl.col("event_type").list.eval(
            pl.element().replace_strict(event_map, default=UNKNOWN_ID, return_dtype=pl.Int64)
        ),
        pl.col("channel").list.eval(
            pl.element().replace_strict(channel_map, default=UNKNOWN_ID, return_dtype=pl.Int64)
        ),
    )
    lengths = samples["event_type"].list.len().to_numpy().astype(np.int64)
    if lengths.size and (lengths.min() < 1 or lengths.max() > max_len):
        raise ValueError(
            f"sequence lengths must be within [1, {max_len}], got [{lengths.min()}, "
            f"{lengths.max()}]; were the samples built with this max_len?"
        )
    time_features = np.stack(
        [_pad_lists(samples[c], lengths, max_len, np.float32) for c in TIME_FEATURES], axis=-1
    )
    labels = samples.select(pl.col(c).cast(pl.Float32) for c in label_columns).to_numpy()
    return EncodedSamples(
        event_ids=_pad_lists(ids["event_type"], lengths, max_len, np.int64),
        channel_ids=_pad_lists(ids["channel"], lengths, max_len, np.int64),
        time_features=time_features,
        lengths=lengths,
        labels=np.ascontiguousarray(labels, dtype=np.float32).reshape(len(lengths), -1),
    )


class LengthBucketBatchSampler(Sampler[np.ndarray]):
    """Batches of similar length (less padding), in a fresh random order every epoch.

    Indices are shuffled, cut into chunks of ``bucket_factor`` batches, sorted by length
    inside each chunk, batched, and the batches shuffled. Deterministic given the seed and
    epoch. With ``shuffle=False`` batches are simply length-sorted (for evaluation).
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        bucket_factor: int = 50,
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_factor = bucket_factor
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from np.array_split(order, len(self))
            return
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        perm = rng.permutation(n)
        chunk = self.batch_size * self.bucket_factor
        batches: list[np.ndarray] = []
        for start in range(0, n, chunk):
            part = perm[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches.extend(np.split(part, range(self.batch_size, part.size, self.batch_size)))
        for i in rng.permutation(len(batches)):
            yield batches[i]


class _BatchDataset(Dataset[Batch]):
    """A dataset indexed by whole batches of indices (used with ``batch_size=None``)."""

    def __init__(self, encoded: EncodedSamples) -> None:
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, indices: np.ndarray) -> Batch:  # type: ignore[override]
        return self.encoded.batch(indices)


class EventDataModule(L.LightningDataModule):
    """Serves pre-encoded splits; build it from `encode_samples` output (no Hydra needed)."""

    def __init__(
        self,
        train: EncodedSamples,
        val: EncodedSamples,
        test: EncodedSamples,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed

    def _loader(self, split: str, shuffle: bool) -> DataLoader[Batch]:
        encoded = self.splits[split]
        size = self.batch_size if shuffle else self.eval_batch_size
        sampler = LengthBucketBatchSampler(encoded.lengths, size, shuffle, self.seed)
        # Batches are already tensors; worker processes would only add IPC on 2 cores.
        return DataLoader(_BatchDataset(encoded), sampler=sampler, batch_size=None)

    def train_dataloader(self) -> DataLoader[Batch]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Batch]:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", shuffle=False)
