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

With ``--data customer_base`` it prints instead the customer-base table of issue 21 (task
purchase_13w on ``data=customer_base``, `bench_customer_base`): named variants (sequence models,
refit / calibration / hybrid variants, RFM-LR, GBM, BG/NBD) and the closed-form oracle, then
the issue-21 targets. The last stdout line is one JSON object with every figure, the machine,
versions and arguments.

    python scripts/bench_quality.py                      # 3 seeds, every model (~35 min, 2 cores)
    python scripts/bench_quality.py --seeds 1 --models lstm,gbm --next-event-models ''  # ~4 min
    python scripts/bench_quality.py --models lstm,gru,transformer   # GRU too
    python scripts/bench_quality.py --data customer_base --with-new-variants   # issue 21
    python scripts/bench_quality.py --data customer_base --customers 2000 --seeds 1 \
        --models lstm,bgnbd --epochs 1 --override trainer=smoke     # plumbing check, ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench_common import run_record
from bench_customer_base import add_customer_base_arguments, run_customer_base
from bench_runs import (
    HORIZON_COLUMNS,
    oracle_test_samples,
    print_table,
    score_truth,
    seed_override,
    summarise,
    train_run,
)

NEXT_EVENT_COLUMNS = {
    "accuracy": "accuracy",
    "top3_accuracy": "top3_accuracy",
    "macro_f1": "macro_f1",
    "nll": "nll",
}
SEQUENCE_MODELS = ("lstm", "gru", "transformer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (mean ± std)")
    parser.add_argument(
        "--data",
        choices=("synthetic", "customer_base"),
        default="synthetic",
        help="synthetic: the behavioural tables (default); customer_base: issue 21's table",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="rows, comma-separated (default synthetic: lstm,transformer,rfm_logreg,gbm; "
        "customer_base: its built-in variants, see bench_customer_base)",
    )
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
    add_customer_base_arguments(parser)
    args = parser.parse_args(argv)
    customer_base_only = args.customers or args.variant or args.with_new_variants
    if args.data == "synthetic" and (customer_base_only or args.recommended):
        parser.error("--customers, --variant, --with-new-variants and --recommended need "
                     "--data customer_base")  # fmt: skip
    if args.data == "synthetic" and args.models is None:
        args.models = "lstm,transformer,rfm_logreg,gbm"
    return args


def oracle_metrics(args: argparse.Namespace, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Score the generator's ground-truth probabilities on exactly the test samples."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from engage_seq.common.config_dir import CONF_DIR
    from engage_seq.synthetic import purchase_probability

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(args.override))
    source = instantiate(cfg.data.source)
    task = instantiate(cfg.task)
    if tuple(task.targets) != ("purchase",):
        raise SystemExit(f"the oracle covers purchase-within-horizon tasks, not {task.targets}")
    test = oracle_test_samples(cfg, env)
    out = {}
    for knows in ("history", "latent"):
        started = time.perf_counter()
        scores = score_truth(
            test,
            lambda cutoff, knows=knows: purchase_probability(
                source, cutoff, task.horizon_seconds, knows=knows, replicates=args.replicates
            ),
        )
        name = "oracle" if knows == "history" else "oracle_latent"
        out[name] = scores
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


# The behavioural data's tables (the default): horizon and next-event, the issue-4 targets.
def run_behavioural(args: argparse.Namespace) -> None:
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    (run_customer_base if args.data == "customer_base" else run_behavioural)(args)


if __name__ == "__main__":
    main()
