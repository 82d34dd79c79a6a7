"""`engage-sweep-report`: the leaderboard of a Hydra multirun folder, rebuilt by hand (a
multirun writes it itself at the end, `engage_seq.experiments.sweep_callback`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from engage_seq.experiments.leaderboard import analyse_sweep
from engage_seq.experiments.leaderboard_files import write_report
from engage_seq.experiments.leaderboard_markdown import render_markdown, winner_line
from engage_seq.experiments.sweep_runs import SEED_KEY


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="engage-sweep-report",
        description="Leaderboard (Markdown + CSV), seed statistics and a plot for a Hydra "
        "multirun folder of engage-train runs.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder (its runs below it)")
    parser.add_argument(
        "--metric", help="metric to rank by (default: the optimized_metric the runs recorded)"
    )
    parser.add_argument("--mode", choices=("max", "min"), help="override the metric's direction")
    parser.add_argument("--seed-key", default=SEED_KEY, help="override pooled as seeds")
    parser.add_argument("--alpha", type=float, default=0.05, help="paired-test level")
    parser.add_argument("--out", type=Path, help="write here instead of into sweep_dir")
    parser.add_argument("--no-plot", action="store_true", help="skip leaderboard.png")
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="skip the tensorboard_report/ logs"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = analyse_sweep(args.sweep_dir, args.metric, args.mode, args.seed_key, args.alpha)
        files = write_report(
            report, args.out, plot=not args.no_plot, tensorboard=not args.no_tensorboard
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"engage-sweep-report: {error}", file=sys.stderr)
        return 2
    print(render_markdown(report))
    print(winner_line(report))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
