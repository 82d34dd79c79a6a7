"""Quality benchmark: every model and baseline on the same splits, next to the oracle.

Trains each sequence model (``--models``) and baseline for every ``--seeds`` value through the
real `engage-train` command (same cached samples, same metric code), computes the synthetic
generator's ground-truth probabilities for the test cutoff, and prints:

* the horizon table (default task purchase_7d): ROC-AUC, PR-AUC, log-loss, Brier, calibration
  error (15-bin ECE), lift in the top 10 %, as mean ± std over seeds, with two oracle rows:
  ``oracle`` (Bayes-optimal given each user's observed history: the best any model can do)
  and ``oracle_latent`` (also knows the generator's hidden per-user parameters);
* the next-event table (accuracy, top-3 accuracy, macro-F1, NLL) against the most-frequent and
  first-order Markov baselines;
* the issue-4 targets and whether they were met.

The last stdout line is one JSON object with every figure, the machine, versions and arguments.

    python scripts/bench_quality.py                      # 3 seeds, every model (~35 min, 2 cores)
    python scripts/bench_quality.py --seeds 1 --models lstm,gbm --next-event-models ''  # ~4 min
    python scripts/bench_quality.py --models lstm,gru,transformer   # GRU too
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import run_record

HORIZON_COLUMNS = {  # metrics.json name -> table / JSON name
    "auroc": "roc_auc",
    "auprc": "pr_auc",
    "logloss": "log_loss",
    "brier": "brier",
    "ece": "calibration_error",
    "lift_top10": "lift_top10",
}
NEXT_EVENT_COLUMNS = {
    "accuracy": "accuracy",
    "top3_accuracy": "top3_accuracy",
    "macro_f1": "macro_f1",
    "nll": "nll",
}
SEQUENCE_MODELS = ("lstm", "gru", "transformer")
BIN = Path(sys.executable).parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (mean ± std)")
    parser.add_argument("--models", default="lstm,transformer,rfm_logreg,gbm")
    parser.add_argument(
        "--next-event-seeds", type=int, default=1, help="seeds per next-event model"
    )
    parser.add_argument("--next-event-models", default="lstm,transformer,markov,most_frequent")
    parser.add_argument(
        "--epochs", type=int, default=10, help="trainer.max_epochs (make train uses 4)"
    )
    parser.add_argument("--next-event-epochs", type=int, default=4)
    parser.add_argument("--replicates", type=int, default=512, help="oracle Monte Carlo paths")
    parser.add_argument("--workdir", type=Path, default=Path("outputs/bench_quality"))
    parser.add_argument(
        "--override", action="append", default=[], help="extra Hydra override for every run"
    )
    return parser.parse_args(argv)


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


def oracle_metrics(args: argparse.Namespace, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Score the generator's ground-truth probabilities on exactly the test samples."""
    import polars as pl
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from engage_seq.common.config_dir import CONF_DIR
    from engage_seq.data.cache import prepare_samples
    from engage_seq.data.schema import USER_KEY_SEED
    from engage_seq.metrics.scores import score_probabilities
    from engage_seq.synthetic import purchase_probability

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(args.override))
    source = instantiate(cfg.data.source)
    task = instantiate(cfg.task)
    if tuple(task.targets) != ("purchase",):
        raise SystemExit(f"the oracle covers purchase-within-horizon tasks, not {task.targets}")
    prepared = prepare_samples(
        source,
        task,
        instantiate(cfg.data.sampling),
        env["ENGAGE_SEQ_CACHE_DIR"],
        instantiate(cfg.data.columns),
        instantiate(cfg.data.ingest),
    )
    test = prepared.split("test").select("user_key", "cutoff", "label_purchase")
    out = {}
    for knows in ("history", "latent"):
        started = time.perf_counter()
        parts = []
        for cutoff in test["cutoff"].unique().sort().to_list():
            truth = purchase_probability(
                source, cutoff, task.horizon_seconds, knows=knows, replicates=args.replicates
            )
            parts.append(
                truth.select(
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
        name = "oracle" if knows == "history" else "oracle_latent"
        out[name] = {f"test/{k}": v for k, v in scores.items()}
        print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return out


def check_task(args: argparse.Namespace) -> None:
    """Fail in seconds, not after the training runs, on a task the oracle cannot score."""
    from hydra import compose, initialize_config_dir

    from engage_seq.common.config_dir import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(args.override))
    if list(cfg.task.get("targets", [])) != ["purchase"]:
        raise SystemExit("the oracle covers purchase-within-horizon tasks (task=purchase_7d)")


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    # No salt: the oracle is joined to the samples by the unkeyed user hash.
    env = {k: v for k, v in os.environ.items() if k != "ENGAGE_SEQ_SALT"}
    env["ENGAGE_SEQ_CACHE_DIR"] = str(workdir / "cache")
    check_task(args)
    common = ["trainer.enable_progress_bar=false", *args.override]
    horizon_common = [f"trainer.max_epochs={args.epochs}", *common]
    next_common = [f"trainer.max_epochs={args.next_event_epochs}", *common]
    started = time.perf_counter()

    horizon_rows = []
    for model in [m for m in args.models.split(",") if m]:
        runs = [
            train_run(workdir / "horizon" / f"{model}_seed{seed}", [f"model={model}",
                      f"seed={seed}", *seed_override(model, seed), *horizon_common], env)
            for seed in range(1, args.seeds + 1)
        ]  # fmt: skip
        horizon_rows.append({"model": model, **summarise(runs, HORIZON_COLUMNS)})
    for name, metrics in oracle_metrics(args, env).items():
        horizon_rows.append({"model": name, **summarise([metrics | {"val/auroc": float("nan")}],
                                                         HORIZON_COLUMNS)})  # fmt: skip

    next_rows = []
    for model in [m for m in args.next_event_models.split(",") if m]:
        runs = [
            train_run(workdir / "next_event" / f"{model}_seed{seed}",
                      [f"model={model}", "task=next_event", f"seed={seed}", *next_common], env)
            for seed in range(1, args.next_event_seeds + 1)
        ]  # fmt: skip
        next_rows.append({"model": model, **summarise(runs, NEXT_EVENT_COLUMNS)})

    print_table("Horizon task (test split)", horizon_rows, HORIZON_COLUMNS)
    if next_rows:
        print_table("Next-event task (test split)", next_rows, NEXT_EVENT_COLUMNS)

    by_name = {row["model"]: row for row in horizon_rows}
    sequence = [row for row in horizon_rows if row["model"] in SEQUENCE_MODELS]
    targets: dict[str, Any] = {}
    if sequence:
        best = max(sequence, key=lambda row: row["val_roc_auc"])  # picked on validation
        targets["best_sequence_model"] = best["model"]
        targets["gap_to_oracle"] = by_name["oracle"]["roc_auc"] - best["roc_auc"]
        targets["within_0.01_of_oracle"] = targets["gap_to_oracle"] <= 0.01
        if "gbm" in by_name:
            targets["lead_over_gbm"] = best["roc_auc"] - by_name["gbm"]["roc_auc"]
            targets["ahead_of_gbm_by_0.02"] = targets["lead_over_gbm"] >= 0.02
        targets["calibration_error"] = best["calibration_error"]
        targets["calibration_error_le_0.02"] = best["calibration_error"] <= 0.02
        print("\nTargets (best sequence model chosen by validation ROC-AUC):")
        for key, value in targets.items():
            print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")

    record = {
        "benchmark": "bench_quality",
        "rows": horizon_rows,
        "next_event_rows": next_rows,
        "targets": targets,
        "seconds": round(time.perf_counter() - started, 1),
        **run_record(args),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
