"""Training throughput: the Lightning module + our data pipeline against bare PyTorch loops.

On the training samples of the built-in synthetic data (its real, skewed length distribution:
many short histories, a pile-up at ``max_len``), for the LSTM and the Transformer defaults,
measured alternately in rounds (so drift in machine load hits every mode alike):

* ``lightning``: `EngagementLitModule` in a `lightning.Trainer` fed by `EventDataModule`
  (length-bucketed batches, vectorised gather), exactly as `engage-train` runs it (logging,
  gradient clipping, LR schedule, per-batch seeding and the finite-loss check included);
* ``bare_bucketed``: a plain PyTorch loop (AdamW, clipping) over the very same batches;
* ``bare_naive``: the loop people write first: random batches, each sample fetched on its own
  and padded to the longest in the batch by a collate function (``pad_sequence``).

Also the collate-only throughput of both data paths (no model). Targets (issue 4):
lightning within 10 % of bare_bucketed, and >= 1.3x bare_naive. The last stdout line is one
JSON object with every figure, the machine, versions and arguments.

    python scripts/bench_train.py                    # ~3 min on 2 cores
    python scripts/bench_train.py --steps 200 --rounds 5 --users 50000
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from bench_common import run_record
from lightning.pytorch.loggers import TensorBoardLogger
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from engage_seq.data.cache import prepare_samples
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.sequences import TIME_FEATURES
from engage_seq.data.tasks import HorizonTask
from engage_seq.models.engagement import EngagementModel
from engage_seq.synthetic import SyntheticEventSource
from engage_seq.training.batches import (
    Batch,
    EncodedSamples,
    EventDataModule,
    Vocabulary,
    encode_samples,
)
from engage_seq.training.lit_module import EngagementLitModule, with_unknown_tokens

MODELS = {
    "lstm": {"encoder": "lstm", "embed_dim": 32, "hidden": 64, "num_layers": 1, "dropout": 0.1},
    "transformer": {
        "encoder": "transformer",
        "embed_dim": 32,
        "hidden": 64,
        "num_layers": 2,
        "num_heads": 4,
        "dropout": 0.0,
    },
}
MODES = ("lightning", "bare_bucketed", "bare_naive")
UNKNOWN_TOKEN_RATE = 0.01  # conf/train.yaml; the bare loops do the same augmentation


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=25_000, help="synthetic users")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per mode and round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--models", default="lstm,transformer")
    parser.add_argument("--cache-dir", type=Path, default=None)
    return parser.parse_args(argv)


def training_samples(args: argparse.Namespace) -> tuple[EncodedSamples, Vocabulary]:
    cache = args.cache_dir or Path(tempfile.gettempdir()) / "engage_seq_bench_cache"
    sampling = SamplingConfig()
    # the package's default data (conf/data/source/synthetic.yaml): replenishment share 0.6
    source = SyntheticEventSource(n_users=args.users, replenishment_share=0.6)
    prepared = prepare_samples(source, HorizonTask(), sampling, cache)
    vocabulary = prepared.fitted_vocabulary
    task = HorizonTask()
    encoded = encode_samples(
        prepared.split("train"), vocabulary, sampling.max_len, task.label_columns
    )
    return encoded, vocabulary


def new_model(name: str, vocabulary: Vocabulary, max_len: int) -> EngagementModel:
    torch.manual_seed(0)
    return EngagementModel(
        n_event_ids=vocabulary.n_event_ids,
        n_channel_ids=vocabulary.n_channel_ids,
        n_time_features=len(TIME_FEATURES),
        n_outputs=1,
        max_len=max_len,
        **MODELS[name],
    )


class _PerSample(Dataset[tuple[torch.Tensor, ...]]):
    """One sample at a time, trimmed to its own length: what a naive Dataset returns."""

    def __init__(self, encoded: EncodedSamples) -> None:
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        e, n = self.encoded, int(self.encoded.lengths[i])
        return (
            torch.from_numpy(e.event_ids[i, :n]),
            torch.from_numpy(e.channel_ids[i, :n]),
            torch.from_numpy(e.attribute_ids[i, :n]),
            torch.from_numpy(e.numeric[i, :n]),
            torch.from_numpy(e.time_features[i, :n]),
            torch.tensor(n),
            torch.from_numpy(e.aggregates[i]),  # (A,): none here, the input is still passed
            torch.from_numpy(e.labels[i]),
        )


def naive_collate(samples: list[tuple[torch.Tensor, ...]]) -> Batch:
    columns = list(zip(*samples, strict=True))
    padded = [pad_sequence(list(c), batch_first=True) for c in columns[:5]]
    rest = [torch.stack(c) for c in columns[5:]]  # lengths, aggregates, labels
    return (*padded, *rest)  # type: ignore[return-value]


def naive_loader(encoded: EncodedSamples, batch_size: int) -> DataLoader[Batch]:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(
        _PerSample(encoded),
        batch_size=batch_size,
        shuffle=True,
        collate_fn=naive_collate,
        generator=generator,
    )


def bucketed_loader(encoded: EncodedSamples, batch_size: int) -> DataLoader[Batch]:
    return EventDataModule(encoded, encoded, encoded, batch_size=batch_size).train_dataloader()


def cycle(loader: DataLoader[Batch]) -> Iterator[Batch]:
    while True:
        yield from loader


def time_bare_loop(model: EngagementModel, batches: Iterator[Batch], args: argparse.Namespace
                   ) -> float:  # fmt: skip
    """Sequences per second of a plain AdamW loop with the same loss and clipping."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    model.train()
    seen = 0
    started = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            started, seen = time.perf_counter(), 0
        batch = with_unknown_tokens(next(batches), UNKNOWN_TOKEN_RATE)  # as engage-train does
        logits = model(*batch[:-1])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch[-1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seen += batch[-1].shape[0]
    return seen / (time.perf_counter() - started)


class _Timer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.started = 0.0
        self.seen = 0
        self.stopped = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, module: Any, batch: Batch, i: int) -> None:
        if trainer.global_step == self.warmup and not self.started:
            self.started = time.perf_counter()
        if self.started:
            self.seen += batch[-1].shape[0]

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.stopped = time.perf_counter()  # the last batch's end, before Lightning's teardown

    def throughput(self) -> float:
        return self.seen / (self.stopped - self.started)


def time_lightning(model: EngagementModel, encoded: EncodedSamples, args: argparse.Namespace
                   ) -> float:  # fmt: skip
    module = EngagementLitModule(model, ["purchase"], unknown_token_rate=UNKNOWN_TOKEN_RATE)
    timer = _Timer(args.warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=args.warmup + args.steps,
        gradient_clip_val=1.0,
        logger=TensorBoardLogger(tempfile.mkdtemp(prefix="bench_train_tb_")),  # as engage-train
        log_every_n_steps=50,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=[timer],
    )
    datamodule = EventDataModule(encoded, encoded, encoded, batch_size=args.batch_size)
    trainer.fit(module, datamodule=datamodule)
    return timer.throughput()


def collate_throughput(loader: DataLoader[Batch], n_batches: int) -> float:
    seen = 0
    started = time.perf_counter()
    for i, batch in enumerate(cycle(loader)):
        if i == n_batches:
            break
        seen += batch[-1].shape[0]
    return seen / (time.perf_counter() - started)


def padding_share(loader: DataLoader[Batch], n_batches: int) -> float:
    """Share of the (B, T) positions a model computes on that are padding."""
    real = total = 0
    for i, batch in enumerate(cycle(loader)):
        if i == n_batches:
            break
        real += int(batch[5].sum())
        total += batch[0].numel()
    return 1.0 - real / total


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    started = time.perf_counter()
    encoded, vocabulary = training_samples(args)
    lengths = encoded.lengths
    max_len = encoded.event_ids.shape[1]
    print(
        f"{len(encoded)} training samples; length p10/p50/p90/max "
        f"{np.percentile(lengths, [10, 50, 90]).tolist()} / {lengths.max()}",
        flush=True,
    )
    results: dict[str, Any] = {
        "collate_sequences_per_s": {
            "bucketed": collate_throughput(bucketed_loader(encoded, args.batch_size), 200),
            "naive": collate_throughput(naive_loader(encoded, args.batch_size), 200),
        },
        "padding_share": {
            "bucketed": padding_share(bucketed_loader(encoded, args.batch_size), 200),
            "naive": padding_share(naive_loader(encoded, args.batch_size), 200),
        },
    }
    for name in [m for m in args.models.split(",") if m]:
        initial = new_model(name, vocabulary, max_len)
        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            samples["lightning"].append(time_lightning(copy.deepcopy(initial), encoded, args))
            samples["bare_bucketed"].append(
                time_bare_loop(copy.deepcopy(initial),
                               cycle(bucketed_loader(encoded, args.batch_size)), args)
            )  # fmt: skip
            samples["bare_naive"].append(
                time_bare_loop(copy.deepcopy(initial),
                               cycle(naive_loader(encoded, args.batch_size)), args)
            )  # fmt: skip
        median = {mode: statistics.median(values) for mode, values in samples.items()}
        results[name] = {
            "sequences_per_s": median,
            "all_rounds": samples,
            "lightning_overhead_vs_bare_bucketed": 1.0
            - median["lightning"] / median["bare_bucketed"],
            "lightning_speedup_vs_bare_naive": median["lightning"] / median["bare_naive"],
        }

    print("\n| model | lightning seq/s | bare (same batches) | bare naive | overhead | speed-up |")
    print("|---|---|---|---|---|---|")
    for name in [m for m in args.models.split(",") if m]:
        r = results[name]
        s = r["sequences_per_s"]
        print(
            f"| {name} | {s['lightning']:.0f} | {s['bare_bucketed']:.0f} | {s['bare_naive']:.0f} "
            f"| {100 * r['lightning_overhead_vs_bare_bucketed']:.1f} % "
            f"| {r['lightning_speedup_vs_bare_naive']:.2f}x |"
        )
    c, p = results["collate_sequences_per_s"], results["padding_share"]
    print(
        f"\ncollate only: bucketed {c['bucketed']:.0f} seq/s ({100 * p['bucketed']:.1f} % "
        f"padding), naive {c['naive']:.0f} seq/s ({100 * p['naive']:.1f} % padding)"
    )
    record = {
        "benchmark": "bench_train",
        **results,
        "train_samples": len(encoded),
        "seconds": round(time.perf_counter() - started, 1),
        **run_record(args),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
