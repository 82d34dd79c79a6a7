"""`engage-evaluate RUN_DIR`: (re)write a finished run's report (``report.md``, figures,
``report.json``, tables, TensorBoard page); `engage-train` writes the same at the end of a run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from engage_seq.evaluation import EvaluationError, ReportOptions


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="engage-evaluate",
        description="Evaluation report of a finished engage-train run: the model against "
        "baselines (and the oracle on the built-in synthetic data) on the run's own test split, "
        "with ROC/PR, calibration, gains/lift and score-distribution figures.",
        epilog="Example: engage-evaluate outputs/runs/2026-11-23_19-31-46_lstm",
    )
    parser.add_argument("run_dir", type=Path, help="run folder written by engage-train")
    parser.add_argument(
        "--out", type=Path, help="write the report here instead of into the run folder"
    )
    default = ReportOptions()
    parser.add_argument(
        "--baselines",
        type=_names,
        default=default.baselines,
        help="comma-separated reference baselines (those the task supports are fitted); "
        f"default {','.join(default.baselines)}",
    )
    parser.add_argument("--no-baselines", action="store_true", help="fit no reference baseline")
    parser.add_argument("--no-oracle", action="store_true", help="skip the synthetic oracle")
    parser.add_argument(
        "--oracle-replicates",
        type=int,
        default=default.oracle_replicates,
        help="Monte Carlo paths per user for the oracle (default %(default)s)",
    )
    parser.add_argument(
        "--no-siblings", action="store_true", help="do not list the other runs of the multirun"
    )
    parser.add_argument("--no-explain", action="store_true", help="skip the explanations section")
    parser.add_argument(
        "--n-explain",
        type=int,
        default=default.n_explain,
        help="test samples explained (default %(default)s)",
    )
    parser.add_argument(
        "--segments",
        type=_names,
        default=default.segments,
        help="comma-separated segment columns for the fairness section: history_length, "
        "last_channel, or columns of the event table (default: "
        f"{','.join(default.segments) or 'none'}); '' switches the section off",
    )
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="skip the tensorboard/report/ page"
    )
    parser.add_argument(
        "--cache-dir", help="sample cache to use (default: the run's cache_dir, as trained)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    return parser.parse_args(argv)


def options_from_args(args: argparse.Namespace) -> ReportOptions:
    return ReportOptions(
        baselines=() if args.no_baselines else args.baselines,
        oracle=not args.no_oracle,
        oracle_replicates=args.oracle_replicates,
        siblings=not args.no_siblings,
        explain=not args.no_explain,
        n_explain=args.n_explain,
        segments=args.segments,
        tensorboard=not args.no_tensorboard,
        cache_dir=args.cache_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from engage_seq.report import write_report

    try:
        path = write_report(args.run_dir, options=options_from_args(args), out_dir=args.out)
    except (EvaluationError, ValueError, FileNotFoundError) as error:
        print(f"engage-evaluate: {error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
