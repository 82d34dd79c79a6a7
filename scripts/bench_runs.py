"""What bench_quality's tables share: one `engage-train` run per row and seed (resumable),
the mean ± std summary of its metrics, and the Markdown table."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
HORIZON_COLUMNS = {  # metrics.json name -> table / JSON name
    "auroc": "roc_auc",
    "auprc": "pr_auc",
    "logloss": "log_loss",
    "brier": "brier",
    "ece": "calibration_error",
    "lift_top10": "lift_top10",
}


def seed_override(model: str, seed: int) -> list[str]:
    """Baselines with their own seed (LightGBM) get the run's seed too."""
    return [f"model.seed={seed}"] if model == "gbm" else []


def train_run(run_dir: Path, overrides: list[str], env: dict[str, str]) -> dict[str, float]:
    """One `engage-train` run (reused if its metrics.json exists: the bench can be resumed)."""
    metrics_path = run_dir / "metrics.json"
    args_path = run_dir / "bench_overrides.json"
    if metrics_path.is_file() and (
        not args_path.is_file() or json.loads(args_path.read_text()) != overrides
    ):
        raise SystemExit(
            f"{run_dir} holds a run with other settings than {overrides}; use another --workdir"
        )
    if not metrics_path.is_file():
        command = [str(BIN / "engage-train"), *overrides, f"hydra.run.dir={run_dir}"]
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
        print(f"  {run_dir.name}: {time.perf_counter() - started:.0f} s", flush=True)
        args_path.write_text(json.dumps(overrides))
    return json.loads(metrics_path.read_text())


def summarise(runs: list[dict[str, float]], columns: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {"seeds": len(runs)}
    for source, name in columns.items():
        values = [r[f"test/{source}"] for r in runs]
        row[name] = statistics.fmean(values)
        row[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    row["val_roc_auc" if "auroc" in columns else "val_nll"] = statistics.fmean(
        r["val/auroc"] if "auroc" in columns else r["val/nll"] for r in runs
    )
    row["fit_seconds"] = statistics.fmean(r.get("train/fit_seconds", 0.0) for r in runs)
    return row


def print_table(title: str, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    names = list(columns.values())
    print(f"\n{title}")
    print("| model | " + " | ".join(names) + " | fit s |")
    print("|---" * (len(names) + 2) + "|")
    for row in rows:
        cells = []
        for name in names:
            std = row.get(f"{name}_std", 0.0)
            cells.append(f"{row[name]:.4f}" + (f" ± {std:.4f}" if row.get("seeds", 1) > 1 else ""))
        print(f"| {row['model']} | " + " | ".join(cells) + f" | {row.get('fit_seconds', 0):.0f} |")


def oracle_test_samples(cfg: Any, env: dict[str, str]) -> Any:
    """The test split's (user_key, cutoff, label_purchase), from the runs' own sample cache."""
    from hydra.utils import instantiate

    from engage_seq.data.cache import prepare_samples

    prepared = prepare_samples(
        instantiate(cfg.data.source),
        instantiate(cfg.task),
        instantiate(cfg.data.sampling),
        env["ENGAGE_SEQ_CACHE_DIR"],
        instantiate(cfg.data.columns),
        instantiate(cfg.data.ingest),
    )
    return prepared.split("test").select("user_key", "cutoff", "label_purchase")


def score_truth(test: Any, truth_at: Callable[[int], Any]) -> dict[str, float]:
    """Score ground-truth probabilities (``truth_at(cutoff)``: user_id, probability) on
    exactly the test samples, joined by the unkeyed user hash (the runs have no salt)."""
    import polars as pl
    import torch

    from engage_seq.data.schema import USER_KEY_SEED
    from engage_seq.metrics.scores import score_probabilities

    parts = []
    for cutoff in test["cutoff"].unique().sort().to_list():
        parts.append(
            truth_at(cutoff).select(
                pl.col("user_id").cast(pl.String).hash(seed=USER_KEY_SEED).alias("user_key"),
                pl.lit(cutoff, dtype=pl.Int64).alias("cutoff"),
                "probability",
            )
        )
    joined = test.join(pl.concat(parts), on=["user_key", "cutoff"], how="left")
    missing = joined["probability"].null_count()
    if missing:
        raise SystemExit(f"oracle has no probability for {missing} test samples")
    probs = torch.tensor(joined["probability"].to_numpy()).unsqueeze(1)
    labels = torch.tensor(joined["label_purchase"].cast(pl.Float64).to_numpy())
    scores = score_probabilities(["purchase"], probs, labels.unsqueeze(1))
    return {f"test/{k}": v for k, v in scores.items()}
