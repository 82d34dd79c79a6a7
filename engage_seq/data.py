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

from engage_seq.sequences import TIME_FEATURES, signed_log1p

PAD_ID = 0
UNKNOWN_ID = 1
# (event_ids, channel_ids, attribute_ids, numeric, time_features, lengths, labels)
Batch = tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
]


@dataclass(frozen=True)
class Vocabulary:
    """Token -> id maps fitted on the training period; ids start at 2 (0 pad, 1 unknown).

    ``tokens`` maps each categorical column (event_type, channel, then ``cat_*`` attributes,
    in that order) to its sorted known values.
    """

    tokens: dict[str, tuple[str, ...]]

    @classmethod
    def from_lists(cls, fitted: dict[str, list[str]]) -> Vocabulary:
        return cls({column: tuple(values) for column, values in fitted.items()})

    @property
    def n_event_ids(self) -> int:
        return len(self.tokens["event_type"]) + 2

    @property
    def n_channel_ids(self) -> int:
        return len(self.tokens["channel"]) + 2

    @property
    def attributes(self) -> list[str]:
        return [c for c in self.tokens if c not in ("event_type", "channel")]

    @property
    def attribute_sizes(self) -> list[int]:
        return [len(self.tokens[c]) + 2 for c in self.attributes]

    def ids(self, column: str) -> dict[str, int]:
        return {token: i + 2 for i, token in enumerate(self.tokens[column])}

    def to_dict(self) -> dict[str, list[str]]:
        return {column: list(values) for column, values in self.tokens.items()}


@dataclass
class EncodedSamples:
    """Dense arrays for one split: N samples, T = max_len, C categorical attributes,
    F numeric attributes, K time features, L labels."""

    event_ids: np.ndarray  # (N, T) int64, 0 = pad
    channel_ids: np.ndarray  # (N, T) int64, 0 = pad
    attribute_ids: np.ndarray  # (N, T, C) int64, 0 = pad
    numeric: np.ndarray  # (N, T, F) float32, scaled, 0 at pads and for missing values
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
            torch.from_numpy(self.attribute_ids[indices, :width]),
            torch.from_numpy(self.numeric[indices, :width]),
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
) -> EncodedSamples:
    """Map tokens to ids (unknown -> 1), scale numerics, pad; input from `build_samples`.

    Numeric attributes become ``clip((signed_log1p(x) - mean) / std, -5, 5)`` with training-
    period statistics; missing values become 0 (the training mean).
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
        labels=np.ascontiguousarray(labels, dtype=np.float32).reshape(n, -1),
    )


class LengthBucketBatchSampler(Sampler[np.ndarray]):
    """Batches of similar length (less padding), in a fresh random order every epoch.

    Indices are shuffled, cut into chunks of ``bucket_factor`` batches, sorted by length
    inside each chunk, batched, and the batches shuffled. Deterministic given the seed and
    the epoch, which Lightning sets through `set_epoch` (so a resumed run sees the same order).
    With ``shuffle=False`` batches are simply length-sorted (for evaluation).

    Distributed: for training every rank builds the same batch list and keeps every
    ``world_size``-th batch from ``rank`` on, so no sample is seen twice; each rank gets the same
    number of batches (DDP steps in lockstep), so up to ``world_size - 1`` batches are left out
    per epoch, different ones each epoch. Evaluation deals samples (not batches) round-robin
    and keeps every one (metrics are gathered as sums and concatenations, never per step).

    ``skip`` batches at the start of epoch ``skip_epoch`` are left out once: how a run resumed
    from a mid-epoch checkpoint continues where it stopped instead of replaying the epoch.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        bucket_factor: int = 50,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_factor = bucket_factor
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0
        self.skip_epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _n_batches(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __len__(self) -> int:
        # The full epoch even when resuming: Lightning counts the skipped batches as done.
        if self.shuffle:
            return self._n_batches() // self.world_size
        return -(-len(self._eval_indices()) // self.batch_size)

    def _eval_indices(self) -> np.ndarray:
        """This rank's samples for evaluation: every world_size-th by length, so each rank
        gets at least one batch whenever there are at least world_size samples."""
        return np.argsort(self.lengths, kind="stable")[self.rank :: self.world_size]

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        perm = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.bucket_factor
        batches: list[np.ndarray] = []
        for start in range(0, perm.size, chunk):
            part = perm[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches.extend(np.split(part, range(self.batch_size, part.size, self.batch_size)))
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[np.ndarray]:
        if not self.shuffle:
            order = self._eval_indices()
            yield from np.array_split(order, len(self)) if order.size else []
            return
        batches = self._all_batches()[self.rank :: self.world_size][: len(self)]
        if self.epoch == self.skip_epoch:
            batches = batches[self.skip :]
            self.skip, self.skip_epoch = 0, -1
        yield from batches


class _BatchDataset(Dataset[Batch]):
    """A dataset indexed by whole batches of indices (used with ``batch_size=None``)."""

    def __init__(self, encoded: EncodedSamples) -> None:
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, indices: np.ndarray) -> Batch:  # type: ignore[override]
        return self.encoded.batch(indices)


class EventDataModule(L.LightningDataModule):
    """Serves pre-encoded splits; build it from `encode_samples` output (no Hydra needed).

    Each loader shards its batches by the trainer's rank (see `LengthBucketBatchSampler`), so
    run the Trainer with ``use_distributed_sampler=False``. Its ``state_dict`` records how far
    the current training epoch got, so a mid-epoch checkpoint resumes exactly there.
    """

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
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches already done)

    def _loader(self, split: str, shuffle: bool) -> DataLoader[Batch]:
        encoded = self.splits[split]
        size = self.batch_size if shuffle else self.eval_batch_size
        trainer = getattr(self, "trainer", None)  # None when used without a Trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        if len(encoded) < world_size:
            raise ValueError(
                f"the {split} split has {len(encoded)} samples for {world_size} processes; "
                "every process needs at least one: use fewer devices or more data"
            )
        sampler = LengthBucketBatchSampler(
            encoded.lengths, size, shuffle, self.seed, rank=rank, world_size=world_size
        )
        if shuffle and trainer is not None:
            # Lightning draws the first batch before its first set_epoch call, so a resumed
            # run must start from the restored epoch here.
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        if shuffle and self._resume_at is not None:
            sampler.skip_epoch, sampler.skip = self._resume_at
            self._resume_at = None
        # Batches are already tensors; worker processes would only add IPC on 2 cores.
        return DataLoader(_BatchDataset(encoded), sampler=sampler, batch_size=None)

    def train_dataloader(self) -> DataLoader[Batch]:
        return self._loader("train", shuffle=True)

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        # A batch is a flat tuple of tensors: skip Lightning's generic recursive collection
        # walk (~0.8 ms per step on CPU, measured in scripts/bench_train.py).
        if all(t.device == device for t in batch):
            return batch
        return tuple(t.to(device, non_blocking=True) for t in batch)  # type: ignore[return-value]

    def val_dataloader(self) -> DataLoader[Batch]:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", shuffle=False)

    def state_dict(self) -> dict[str, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        loop = trainer.fit_loop
        epochs = loop.epoch_progress.current
        # At a mid-epoch save (on_train_batch_end) the current batch counts as processed. At an
        # epoch-end save the epoch already counts as processed: the next one starts afresh.
        done = (
            0
            if epochs.processed > epochs.completed
            else loop.epoch_loop.batch_progress.current.processed
        )
        return {
            "epoch": epochs.processed,
            "batches_done": done,
            "batch_size": self.batch_size,
            "world_size": trainer.world_size,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if not state_dict:
            return
        trainer = getattr(self, "trainer", None)
        world_size = trainer.world_size if trainer is not None else 1
        saved = (state_dict.get("batch_size", self.batch_size), state_dict.get("world_size", 1))
        if saved != (self.batch_size, world_size):
            raise ValueError(
                f"cannot resume: the checkpoint was written with batch_size={saved[0]} on "
                f"{saved[1]} process(es), this run has batch_size={self.batch_size} on "
                f"{world_size}; the batches already done would not line up. Resume with the "
                "same settings or start a new run"
            )
        self._resume_at = (int(state_dict["epoch"]), int(state_dict["batches_done"]))
