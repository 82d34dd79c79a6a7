"""Benchmark sample building: engage_seq vs. a straightforward pandas implementation.

For each ``--events N`` it writes N synthetic events as Parquet (not timed), then times, each in
a fresh subprocess so peak RSS is its own:

* **engage_seq**: `prepare_samples` end to end: read -> validate -> vocabularies and numeric
  scaling (training period) -> samples of every split with all features -> Parquet on disk;
* **pandas**: read -> sort -> groupby.tail + list aggregation per cutoff -> labels -> Parquet.
  Run on sizes up to ``--pandas-max-events`` (pandas must hold everything in memory).

Both build the same samples (one cutoff per split by default); the script checks that the
sample counts and positive labels agree. Prints events/s, seconds, peak RSS and the speed ratio;
the last stdout line is one JSON object with every figure, the machine, versions and arguments.

    python scripts/bench_sequences.py                       # 1M events, a minute or two
    python scripts/bench_sequences.py --events 1000000 10000000
    pip install -e '.[bench]'                               # pandas + pyarrow for the reference
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import peak_rss_gb

EVENTS_PER_USER = 47.1  # what the synthetic generator yields on average over 120 days
USERS_PER_CHUNK = 100_000
HIDDEN = ("worker", "data", "out", "cutoffs", "shards_for_run")  # internal worker arguments


def generate(n_events: int, out: Path) -> int:
    """Write ~n_events synthetic events as Parquet chunks under ``out``; returns the rows."""
    import polars as pl

    from engage_seq.synthetic import SyntheticEventSource

    out.mkdir(parents=True, exist_ok=True)
    users = max(1, round(n_events / EVENTS_PER_USER))
    rows = 0
    for chunk in range(math.ceil(users / USERS_PER_CHUNK)):
        n = min(USERS_PER_CHUNK, users - chunk * USERS_PER_CHUNK)
        frame = SyntheticEventSource(n_users=n, seed=chunk).scan().collect()
        frame = frame.with_columns((pl.lit(f"k{chunk}-") + pl.col("user_id")).alias("user_id"))
        frame.write_parquet(out / f"part-{chunk:05d}.parquet")
        rows += frame.height
    return rows


def run_engage_seq(
    data: Path, out: Path, max_len: int, train_cutoffs: int, shards: int
) -> dict[str, float]:
    import polars as pl

    from engage_seq.data.cache import prepare_samples
    from engage_seq.data.ingest import FileEventSource, IngestConfig
    from engage_seq.data.sampling import SamplingConfig
    from engage_seq.data.tasks import HorizonTask

    start = time.perf_counter()
    prepared = prepare_samples(
        FileEventSource(str(data)),
        HorizonTask(),
        SamplingConfig(max_len=max_len, n_train_cutoffs=train_cutoffs, shards=shards),
        out,
        ingest=IngestConfig(max_drop_fraction=1.0),
    )
    seconds = time.perf_counter() - start
    by_split = (
        prepared.scan()
        .group_by("split")
        .agg(pl.len().alias("n"), pl.col("label_purchase").sum().alias("pos"))
        .collect()
    )
    return {
        "seconds": seconds,
        "samples": int(by_split["n"].sum()),
        "check": {r["split"]: [r["n"], r["pos"]] for r in by_split.to_dicts()},
        "cutoffs": [c for _, c in prepared.plan.items()],
    }


def run_pandas(
    data: Path, out: Path, max_len: int, cutoffs: list[list], horizon: int
) -> dict[str, float]:
    """The usual hand-rolled preprocessing: sort, groupby, tail, list aggregation."""
    import numpy as np
    import pandas as pd

    from engage_seq.data.sequences import SEQUENCE_COLUMNS

    start = time.perf_counter()
    df = pd.read_parquet(data)
    df = df.dropna(subset=["user_id", "timestamp", "event_type"]).drop_duplicates()
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    df["ts"] = (df["timestamp"] - epoch) // pd.Timedelta(seconds=1)
    df = df.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    gap = df.groupby("user_id", sort=False)["ts"].diff().fillna(0) / 3600.0
    df["log_gap_h"] = np.log1p(gap).astype("float32")
    type_gap = df.groupby(["user_id", "event_type"], sort=False)["ts"].diff() / 3600.0
    df["log_type_gap_h"] = np.log1p(type_gap).fillna(-1.0).astype("float32")
    hour = (df["ts"] % 86_400) / 3600.0
    dow = ((df["ts"] // 86_400) + 3) % 7
    df["hour_sin"] = np.sin(2 * np.pi * hour / 24).astype("float32")
    df["hour_cos"] = np.cos(2 * np.pi * hour / 24).astype("float32")
    df["dow_sin"] = np.sin(2 * np.pi * dow / 7).astype("float32")
    df["dow_cos"] = np.cos(2 * np.pi * dow / 7).astype("float32")
    columns = list(SEQUENCE_COLUMNS)  # the same per-event columns engage_seq builds
    parts = []
    for split, cutoff in cutoffs:
        history = df[df["ts"] < cutoff].copy()
        history["log_age_h"] = np.log1p((cutoff - history["ts"]) / 3600.0).astype("float32")
        grouped = history.groupby("user_id", sort=False)
        n_history = grouped.size().rename("n_history")
        samples = grouped.tail(max_len).groupby("user_id", sort=False)[columns].agg(list)
        window = df[(df["ts"] >= cutoff) & (df["ts"] < cutoff + horizon)]
        buyers = set(window.loc[window["event_type"] == "purchase", "user_id"])
        samples = samples.join(n_history)
        samples["label_purchase"] = samples.index.isin(buyers)
        samples["split"], samples["cutoff"] = split, cutoff
        parts.append(samples.reset_index())
    result = pd.concat(parts, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    result.to_parquet(out / "samples.parquet")
    seconds = time.perf_counter() - start
    check = result.groupby("split").agg(n=("label_purchase", "size"), pos=("label_purchase", "sum"))
    return {
        "seconds": seconds,
        "samples": len(result),
        "check": {s: [int(r.n), int(r.pos)] for s, r in check.iterrows()},
    }


def worker(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.worker == "engage_seq":
        shards = int(args.shards_for_run)
        result = run_engage_seq(Path(args.data), out, args.max_len, args.train_cutoffs, shards)
    else:
        result = run_pandas(
            Path(args.data), out, args.max_len, json.loads(args.cutoffs), 7 * 86_400
        )
    result["peak_rss_gb"] = peak_rss_gb()  # this worker's own peak, not its parent's
    print(json.dumps(result))


def spawn(kind: str, data: Path, out: Path, args: argparse.Namespace, **extra: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # a left-over sample cache would be a cache hit
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-len",
        str(args.max_len),
        "--train-cutoffs",
        str(args.train_cutoffs),
    ]
    for key, value in extra.items():
        command += [f"--{key}", value]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events",
        type=int,
        nargs="+",
        default=[1_000_000],
        help="event-table sizes, e.g. 1000000 10000000 100000000",
    )
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--train-cutoffs", type=int, default=1, help="training cutoffs")
    parser.add_argument("--pandas-max-events", type=int, default=10_000_000)
    parser.add_argument(
        "--shards",
        type=int,
        default=0,
        help="user-hash shards for engage_seq (0: one per ~12M events, in memory below that)",
    )
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas reference")
    parser.add_argument("--workdir", default=None, help="keep generated data here (reused)")
    parser.add_argument("--worker", choices=["engage_seq", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--cutoffs", help=argparse.SUPPRESS)
    parser.add_argument("--shards-for-run", default="1", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401

        have_pandas = not args.no_pandas
    except ImportError:
        have_pandas = False
        if not args.no_pandas:
            print("pandas/pyarrow not installed: pip install -e '.[bench]' for the reference")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_seq_"))
    results = []
    for n in args.events:
        data = workdir / f"events_{n}"
        if not data.is_dir():
            started = time.perf_counter()
            rows = generate(n, data)
            print(f"generated {rows:,} events in {time.perf_counter() - started:.1f} s -> {data}")
        shards = args.shards or max(1, math.ceil(n / 12_000_000))
        ours = spawn(
            "engage_seq", data, workdir / f"out_engage_{n}", args, **{"shards-for-run": str(shards)}
        )
        row = {
            "events": n,
            "engage_seq_seconds": ours["seconds"],
            "engage_seq_events_per_s": n / ours["seconds"],
            "engage_seq_peak_rss_gb": ours["peak_rss_gb"],
            "samples": ours["samples"],
            "shards": shards,
        }
        if have_pandas and n <= args.pandas_max_events:
            splits = ["train"] * args.train_cutoffs + ["val", "test"]
            cutoffs = json.dumps([list(p) for p in zip(splits, ours["cutoffs"], strict=True)])
            ref = spawn("pandas", data, workdir / f"out_pandas_{n}", args, cutoffs=cutoffs)
            row.update(
                {
                    "pandas_seconds": ref["seconds"],
                    "pandas_events_per_s": n / ref["seconds"],
                    "pandas_peak_rss_gb": ref["peak_rss_gb"],
                    "speedup_vs_pandas": ref["seconds"] / ours["seconds"],
                    "same_samples": ref["check"] == ours["check"],
                }
            )
        results.append(row)
        print(
            f"{n:>12,} events: engage_seq {ours['seconds']:6.1f} s "
            f"({row['engage_seq_events_per_s'] / 1e6:5.2f} M events/s, "
            f"peak {ours['peak_rss_gb']:4.1f} GB, {ours['samples']:,} samples)"
            + (
                f" | pandas {row['pandas_seconds']:6.1f} s (peak {row['pandas_peak_rss_gb']:4.1f}"
                f" GB) | {row['speedup_vs_pandas']:4.1f}x | same samples: {row['same_samples']}"
                if "pandas_seconds" in row
                else ""
            ),
            flush=True,
        )
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    import polars
    import torch

    record = {
        "results": results,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.machine(),
        },
        "versions": {
            "python": platform.python_version(),
            "polars": polars.__version__,
            "torch": torch.__version__,
        },
        "args": {k: v for k, v in vars(args).items() if k not in HIDDEN},
        "command": "python scripts/bench_sequences.py " + " ".join(argv or sys.argv[1:]),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
