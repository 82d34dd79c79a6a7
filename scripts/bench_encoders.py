"""Benchmark encoder training steps on the real length distribution of the synthetic data.

Measures, per training step (forward + backward + AdamW), on CPU or the current GPU:

* LSTM over right-padded input read at ``length - 1`` (what engage_seq does) vs. a packed
  LSTM (``pack_padded_sequence``), and checks that both give the same final states;
* the Transformer encoder as shipped (dropout on residual branches only) vs. the same
  model with ``nn.TransformerEncoderLayer`` (which also drops attention weights).

Batches are drawn with the same length-bucketing sampler as training. The last stdout line is
one JSON object with every figure, the machine, versions and arguments.

    python scripts/bench_encoders.py                  # defaults: a minute or two on 2 cores
    python scripts/bench_encoders.py --users 25000 --steps 50 --batch-size 512
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import polars as pl
import torch
from torch import nn

from engage_seq.data.sampling import SamplingConfig, plan_cutoffs
from engage_seq.data.schema import to_canonical
from engage_seq.data.sequences import build_samples
from engage_seq.data.tasks import HorizonTask
from engage_seq.models.encoders import RecurrentEncoder, padding_mask
from engage_seq.models.engagement import EngagementModel
from engage_seq.synthetic import SyntheticEventSource
from engage_seq.training.batches import LengthBucketBatchSampler


def real_lengths(users: int, max_len: int) -> np.ndarray:
    source = SyntheticEventSource(n_users=users)
    events = to_canonical(source.scan())
    lo, hi = events.select(pl.col("ts").min(), pl.col("ts").max().alias("hi")).collect().row(0)
    task = HorizonTask()
    plan = plan_cutoffs(lo, hi + 1, task, SamplingConfig(max_len=max_len))
    samples = build_samples(events, task, plan, max_len).collect()
    return samples["event_type"].list.len().to_numpy().astype(np.int64)


class PackedLSTM(nn.Module):
    """The alternative we measured against: pack, run, take h_n of the last layer."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.rnn(packed)
        return h_n[-1]


class StockTransformer(nn.Module):
    """nn.TransformerEncoderLayer (dropout also on attention weights), same width/depth."""

    def __init__(self, dim: int, hidden: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.input = nn.Linear(dim, hidden)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, 2 * hidden, dropout, "gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = padding_mask(lengths, x.size(1))
        h = self.layers(self.input(x), src_key_padding_mask=pad)
        h = torch.where(pad.unsqueeze(-1), torch.zeros_like(h), h)
        return h.sum(1) / lengths.unsqueeze(1)


def time_steps(
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: list[nn.Parameter],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    warmup: int,
) -> float:
    """Mean milliseconds per training step over ``batches`` after ``warmup`` steps."""
    opt = torch.optim.AdamW(params)

    def one(x: torch.Tensor, lengths: torch.Tensor) -> None:
        step(x, lengths).float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for x, lengths in batches[:warmup]:
        one(x, lengths)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x, lengths in batches[warmup:]:
        one(x, lengths)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / max(len(batches) - warmup, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000, help="synthetic users for lengths")
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--dim", type=int, default=32, help="event embedding size")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lengths = real_lengths(args.users, args.max_len)
    sampler = LengthBucketBatchSampler(lengths, args.batch_size, shuffle=True, seed=args.seed)
    batches = []
    for i, idx in enumerate(sampler):
        if i == args.steps + args.warmup:
            break
        n = torch.from_numpy(lengths[idx]).to(device)
        x = torch.randn(len(idx), int(n.max()), args.dim, device=device)
        batches.append((x, n))

    results: dict[str, float] = {}
    padded = RecurrentEncoder(args.dim, args.hidden, num_layers=1, dropout=0.0).to(
        device
    )  # shipped
    packed = PackedLSTM(args.dim, args.hidden).to(device)
    packed.load_state_dict(padded.state_dict())
    with torch.no_grad():
        x, n = batches[0]
        results["lstm_padded_vs_packed_max_abs_diff"] = float(
            (padded(x, n) - packed(x, n)).abs().max()
        )
    results["lstm_padded_ms_per_step"] = time_steps(
        padded, list(padded.parameters()), batches, args.warmup
    )
    results["lstm_packed_ms_per_step"] = time_steps(
        packed, list(packed.parameters()), batches, args.warmup
    )
    ours = EngagementModel(
        10, 6, 1, 1, args.max_len, encoder="transformer", embed_dim=args.dim, hidden=args.hidden,
        num_layers=2,
    ).encoder.to(device)  # fmt: skip
    stock = StockTransformer(args.dim, args.hidden, 2, 4, 0.1).to(device)
    results["transformer_residual_dropout_ms_per_step"] = time_steps(
        ours, list(ours.parameters()), batches, args.warmup
    )
    results["transformer_stock_layer_ms_per_step"] = time_steps(
        stock, list(stock.parameters()), batches, args.warmup
    )
    results["mean_length"] = float(lengths.mean())

    for key, value in results.items():
        print(f"{key:45s} {value:10.4g}")
    record = {
        **results,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "args": vars(args),
        "command": "python scripts/bench_encoders.py " + " ".join(argv or sys.argv[1:]),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
