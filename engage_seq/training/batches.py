"""Encoded samples -> batches -> the LightningDataModule (encoding itself: `encoding`).

Samples are encoded to dense arrays once; a batch is a fancy-index into them, trimmed to the
longest sequence in the batch, so there is no per-sample Python in the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from engage_seq.data.encoding import (  # re-exported: the encoding half of this module's job
    NO_NEXT_EVENT,
    PAD_ID,
    UNKNOWN_ID,
    EncodedSamples,
    Vocabulary,
    encode_samples,
    label_expr,
    next_event_classes,
)

__all__ = [
    "NO_NEXT_EVENT",
    "PAD_ID",
    "UNKNOWN_ID",
    "Batch",
    "EncodedSamples",
    "EventDataModule",
    "LengthBucketBatchSampler",
    "Vocabulary",
    "encode_samples",
    "label_expr",
    "next_event_classes",
]
# (event_ids, channel_ids, attribute_ids, numeric, time_features, lengths, aggregates, labels):
# the model's inputs (MODEL_INPUTS), then the labels
Batch = tuple[
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
]


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


class _ResumableDataLoader(DataLoader[Batch]):
    """A loader Lightning recognises as resumable mid-epoch (it has ``state_dict`` /
    ``load_state_dict``; otherwise Lightning warns that a mid-epoch resume "may be
    unreliable"). The position within the epoch is restored by
    `EventDataModule.load_state_dict` (its sampler skips the batches already done, from the
    same seeded batch plan), so the loader itself carries no state: a resumed run ends with
    the same steps and metrics as an uninterrupted one (tests/integration/test_training.py)."""

    def state_dict(self) -> dict[str, int]:
        return {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        return None


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
        loader = _ResumableDataLoader if shuffle else DataLoader
        return loader(_BatchDataset(encoded), sampler=sampler, batch_size=None)

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
