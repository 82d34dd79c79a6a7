"""Serving speed: the exported module's two entry points against eager PyTorch, and engage-score
end to end.

For the LSTM and the Transformer at their default sizes (conf/model/*.yaml; the vocabulary of
the built-in synthetic data; weights are untrained: speed does not depend on them), with one
torch thread:

* batch-1 latency (p50, p99 over ``--calls`` calls) of a user with ``--events`` events:
  ``eager`` (the nn.Module on tensors), ``torchscript_tensor`` (the artifact's ``forward``),
  ``torchscript_raw`` (the artifact's ``predict_events`` on raw strings and timestamps:
  vocabulary lookup, time features, truncation and padding included);
* ``torch_export``: the ``--pt2`` program of the tensor entry (``engage-export --pt2``);
* batch-1024 throughput (users/s) of the same.

Then ``engage-score`` end to end with all threads: a synthetic Parquet table of ``--users``
users (as the generator makes them: ~50 events each over 120 days) -> validated, encoded,
scored, ranked, written; users per second from reading the Parquet to the scores on disk.

Targets (issue 6), 2-core CPU: TorchScript batch-1 p99 <= 1 ms (tensor) and <= 2 ms (raw) at
64 events; raw within 2x of tensor; TorchScript never slower than eager; engage-score >=
50,000 users/s on 1M users. The last stdout line is one JSON object with every figure.

    python scripts/bench_serving.py                      # ~3 min on 2 cores (100k users)
    python scripts/bench_serving.py --users 1000000      # the 1M-user scoring figure
    python scripts/bench_serving.py --models '' --users 1000000 --score-shards 1,8  # memory

Each engage-score run happens in a fresh process, so its peak RSS is its own (the table is
generated in this one); ``--score-shards 1,8`` compares the whole table in memory with users
split into 8 parts scored one at a time (bounded memory, issue 8).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from bench_common import run_record

from engage_seq.data.sequences import TIME_FEATURES
from engage_seq.experiments.hybrid import RUN_SWITCHES
from engage_seq.models.engagement import EngagementModel, ProbabilityModel
from engage_seq.serving.export import ARTIFACT_FORMAT_VERSION
from engage_seq.serving.loading import write_sidecar
from engage_seq.serving.scripted import ServingModule
from engage_seq.synthetic import SyntheticEventSource

REPO = Path(__file__).resolve().parent.parent
EVENT_TYPES = [
    "add_to_cart",
    "email_click",
    "email_open",
    "page_view",
    "product_view",
    "purchase",
    "push_open",
    "unsubscribe",
]
CHANNELS = ["app", "email", "push", "web"]


def build_module(encoder: str, max_len: int) -> ServingModule:
    config = yaml.safe_load((REPO / "conf" / "model" / f"{encoder}.yaml").read_text())
    # `aggregates` and the BG/NBD switches are the run's (engage_seq.experiments.hybrid), not
    # model arguments: the serving benchmark measures the sequence models without them
    config = {k: v for k, v in config.items() if not k.startswith("_") and k not in RUN_SWITCHES}
    model = EngagementModel(
        n_event_ids=len(EVENT_TYPES) + 2,
        n_channel_ids=len(CHANNELS) + 2,
        n_time_features=len(TIME_FEATURES),
        n_outputs=1,
        max_len=max_len,
        **config,
    ).eval()
    vocabulary = {"event_type": EVENT_TYPES, "channel": CHANNELS}
    return ServingModule(
        ProbabilityModel(model, ["purchase"]), vocabulary, [], [], max_len, list(TIME_FEATURES)
    ).eval()


def raw_users(n_users: int, n_events: int, seed: int) -> tuple[Any, ...]:
    """predict_events arguments: users with ``n_events`` events each, hours apart."""
    rng = np.random.default_rng(seed)
    start = 1_767_225_600  # 2026-01-01
    types = rng.choice(EVENT_TYPES, size=(n_users, n_events)).tolist()
    channels = rng.choice(CHANNELS, size=(n_users, n_events)).tolist()
    gaps = rng.integers(60, 86_400, size=(n_users, n_events)).cumsum(axis=1)
    timestamps = [torch.from_numpy(start + row) for row in gaps]
    cutoffs = torch.from_numpy(start + gaps[:, -1] + 1)
    numeric = [torch.zeros(n_events, 0, dtype=torch.float64) for _ in range(n_users)]
    attributes: list[list[list[str | None]]] = [[] for _ in range(n_users)]
    return types, timestamps, channels, attributes, numeric, cutoffs


def time_calls(fn: Any, calls: int, warmup: int = 50) -> list[float]:
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        seconds = []
        for _ in range(calls):
            began = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - began)
    return seconds


def latency_and_throughput(encoder: str, args: argparse.Namespace) -> dict[str, Any]:
    module = build_module(encoder, args.max_len)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        scripted = torch.jit.script(module)
    one = raw_users(1, args.events, seed=1)
    many = raw_users(args.batch, args.events, seed=2)
    with torch.inference_mode():
        one_tensors = scripted.preprocess_events(*one)
        many_tensors = scripted.preprocess_events(*many)
    with warnings.catch_warnings():  # nn.LSTM's flat weights: a known, harmless export note
        warnings.filterwarnings("ignore", message=r".*were assigned during export")
        program = torch.export.export(  # time steps fixed at max_len for recurrent encoders
            module.model,
            tuple(t.clone() for t in many_tensors),  # inference-mode tensors cannot be traced
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1_000_000)},) * 7,
        ).module()
    entries = {
        "eager": (lambda: module(*one_tensors), lambda: module(*many_tensors)),
        "torch_export": (lambda: program(*one_tensors), lambda: program(*many_tensors)),
        "torchscript_tensor": (lambda: scripted(*one_tensors), lambda: scripted(*many_tensors)),
        "torchscript_raw": (
            lambda: scripted.predict_events(*one),
            lambda: scripted.predict_events(*many),
        ),
    }
    result: dict[str, Any] = {}
    for name, (single, batch) in entries.items():
        seconds = time_calls(single, args.calls)
        quantiles = statistics.quantiles(seconds, n=100)
        batch_seconds = time_calls(batch, args.batch_calls, warmup=2)
        result[name] = {
            "batch1_p50_ms": round(quantiles[49] * 1e3, 3),
            "batch1_p99_ms": round(quantiles[98] * 1e3, 3),
            f"batch{args.batch}_users_per_s": round(args.batch / statistics.median(batch_seconds)),
        }
        print(
            f"{encoder:12s} {name:19s} batch-1 p50 {result[name]['batch1_p50_ms']:7.3f} ms  "
            f"p99 {result[name]['batch1_p99_ms']:7.3f} ms   batch-{args.batch} "
            f"{result[name][f'batch{args.batch}_users_per_s']:>9,} users/s",
            flush=True,
        )
    return result


def scoring_throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    began = time.perf_counter()
    source = SyntheticEventSource(n_users=args.users, days=120, seed=3)
    events = workdir / "events.parquet"
    source.scan().collect().write_parquet(events)
    generate_seconds = time.perf_counter() - began
    module = build_module("lstm", args.max_len)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        scripted = torch.jit.script(module)
        metadata = {
            "format_version": ARTIFACT_FORMAT_VERSION,
            "output_names": ["purchase"],
            "vocabulary": {"event_type": EVENT_TYPES, "channel": CHANNELS},
            "categorical_attributes": [],
            "numeric_attributes": [],
            "numeric_scaling": {},
            "max_len": args.max_len,
            "task": {"name": "purchase_7d", "targets": ["purchase"]},
        }
        artifact = workdir / "lstm.pt"
        torch.jit.save(
            scripted, str(artifact), _extra_files={"metadata.json": json.dumps(metadata)}
        )
    write_sidecar(artifact)  # built here, not by engage-export: vouch for it for engage-score
    runs = {}
    for shards in args.score_shards:
        report, peak_gb = score_in_child(artifact, events, workdir, shards, args.score_threads)
        rows = report["rows_read"]
        print(
            f"engage-score --shards {shards}: {report['users_scored']:,} users ({rows:,} events) "
            f"in {report['seconds']['total']:.1f} s = {report['users_per_second']:,.0f} users/s "
            f"(read+validate {report['seconds']['read_and_validate']:.1f} s, encode "
            f"{report['seconds']['encode']:.1f} s, model {report['seconds']['model']:.1f} s), "
            f"peak RSS {peak_gb:.1f} GB",
            flush=True,
        )
        runs[str(shards)] = {
            "users": report["users_scored"],
            "events": rows,
            "seconds": report["seconds"],
            "users_per_second": report["users_per_second"],
            "peak_rss_gb": round(peak_gb, 2),
        }
    first = runs[str(args.score_shards[0])]
    return {**first, "by_shards": runs, "generate_seconds": round(generate_seconds, 1)}


SCORE_CHILD = """
import json, sys, torch
from bench_common import peak_rss_gb
from engage_seq.serving.scoring import score_events
torch.set_num_threads(int(sys.argv[5]))
report = score_events(sys.argv[1], sys.argv[2], sys.argv[3], top="5%", shards=int(sys.argv[4]))
print(json.dumps({**report, "peak_rss_gb": peak_rss_gb()}))
"""


def score_in_child(
    artifact: Path, events: Path, workdir: Path, shards: int, threads: int
) -> tuple[dict[str, Any], float]:
    """engage-score in a fresh process, so its peak RSS (GB) is its own, not the generator's."""
    out = workdir / f"scores-{shards}.parquet"
    command = [sys.executable, "-c", SCORE_CHILD, str(artifact), str(events), str(out)]
    paths = [str(REPO / "scripts"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    done = subprocess.run(
        [*command, str(shards), str(threads)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"engage-score --shards {shards} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, report.pop("peak_rss_gb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lstm,transformer")
    parser.add_argument("--events", type=int, default=64, help="events per user (latency)")
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--calls", type=int, default=1000, help="batch-1 calls per entry")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--batch-calls", type=int, default=10)
    parser.add_argument("--users", type=int, default=100_000, help="engage-score table size")
    parser.add_argument("--score-threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-score", action="store_true", help="skip the engage-score run")
    parser.add_argument(
        "--score-shards",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1],
        help="engage-score --shards values to run, e.g. 1,8 (each in its own process)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    record: dict[str, Any] = {"latency": {}}
    for encoder in [m for m in args.models.split(",") if m]:
        record["latency"][encoder] = latency_and_throughput(encoder, args)
    checks = {}
    for encoder, figures in record["latency"].items():
        tensor, raw, eager = (
            figures[k] for k in ("torchscript_tensor", "torchscript_raw", "eager")
        )
        checks[encoder] = {
            "tensor_p99_le_1ms": tensor["batch1_p99_ms"] <= 1.0,
            "raw_p99_le_2ms": raw["batch1_p99_ms"] <= 2.0,
            "raw_within_2x_tensor": raw["batch1_p50_ms"] <= 2 * tensor["batch1_p50_ms"],
            "torchscript_not_slower_than_eager": tensor["batch1_p50_ms"]
            <= eager["batch1_p50_ms"] * 1.05,
        }
        print(f"{encoder}: {checks[encoder]}")
    record["targets"] = checks
    if not args.no_score:
        with tempfile.TemporaryDirectory() as tmp:
            record["engage_score"] = scoring_throughput(args, Path(tmp))
        record["targets"]["engage_score_ge_50k_users_per_s"] = (
            record["engage_score"]["users_per_second"] >= 50_000
        )
    record.update(run_record(args))
    print(json.dumps(record))


if __name__ == "__main__":
    main()
