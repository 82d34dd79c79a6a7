"""`engage-evaluate RUN_DIR`: (re)write a finished run's report (``report.md``, figures,
``report.json``, tables, TensorBoard page); `engage-train` writes the same at the end of a run.

It starts from the run's own ``report:`` block (``config_resolved.yaml``), so without flags
it rebuilds the report training wrote; each flag given overrides one setting.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from engage_seq.evaluation.options import FLAGS, ReportOptions, run_report_options
from engage_seq.evaluation.run_folder import EvaluationError


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
    _add_reference_flags(parser, ReportOptions())
    _add_section_flags(parser, ReportOptions())
    parser.add_argument(
        "--cache-dir", help="sample cache to use (default: the run's cache_dir, as trained)"
    )
    parser.add_argument(
        "--batch-size", type=int, help="evaluation batch size (default: the run's eval_batch_size)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    return parser.parse_args(argv)


def _add_reference_flags(parser: argparse.ArgumentParser, default: ReportOptions) -> None:
    """The rows the model is compared with: baselines, the oracle, sibling runs."""
    parser.add_argument(
        "--baselines",
        type=_names,
        help="comma-separated reference baselines (those the task supports are fitted); "
        f"default: the run's report.baselines ({','.join(default.baselines)} unless set)",
    )
    parser.add_argument("--no-baselines", action="store_true", help="fit no reference baseline")
    switch = argparse.BooleanOptionalAction
    parser.add_argument(
        "--oracle",
        action=switch,
        help="the synthetic data's oracle row (default: the run's report.oracle)",
    )
    parser.add_argument(
        "--oracle-replicates",
        type=int,
        help="Monte Carlo paths per user for the oracle "
        f"(default: the run's report.oracle_replicates, {default.oracle_replicates} unless set)",
    )
    parser.add_argument(
        "--oracle-max-users",
        type=int,
        help="user-cutoffs above which the oracle is skipped "
        f"(default: the run's report.oracle_max_users, {default.oracle_max_users:,} unless set)",
    )
    parser.add_argument(
        "--siblings",
        action=switch,
        help="list the other runs of the multirun on the same samples (default: report.siblings)",
    )


def _add_section_flags(parser: argparse.ArgumentParser, default: ReportOptions) -> None:
    """The optional parts of the report: explanations, segment fairness, TensorBoard page."""
    switch = argparse.BooleanOptionalAction
    parser.add_argument(
        "--explain",
        action=switch,
        help="the explanations section (default: the run's report.explain)",
    )
    parser.add_argument(
        "--n-explain",
        type=int,
        help="test samples explained "
        f"(default: the run's report.n_explain, {default.n_explain} unless set)",
    )
    parser.add_argument(
        "--segments",
        type=_names,
        help="comma-separated segment columns for the fairness section: history_length, "
        "last_channel, or columns of the event table (default: the run's report.segments, "
        f"{','.join(default.segments) or 'none'} unless set); '' switches the section off",
    )
    parser.add_argument(
        "--tensorboard",
        action=switch,
        help="the tensorboard/report/ page (default: the run's report.tensorboard)",
    )


def options_from_args(args: argparse.Namespace, base: ReportOptions | None = None) -> ReportOptions:
    """``base`` (the run's own `run_report_options`; defaults without one) with only the flags
    the user actually passed applied on top."""
    base = base or ReportOptions()
    changes = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    if args.no_baselines:
        changes["baselines"] = ()
    return replace(base, enabled=True, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from engage_seq.reporting.report import write_report

    try:
        if not args.run_dir.is_dir():
            raise EvaluationError(
                f"{args.run_dir} is not a folder; pass a run folder written by engage-train"
            )
        options = options_from_args(args, run_report_options(args.run_dir))
        path = write_report(args.run_dir, options=options, out_dir=args.out)
    except (EvaluationError, ValueError, FileNotFoundError) as error:
        print(f"engage-evaluate: {error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
