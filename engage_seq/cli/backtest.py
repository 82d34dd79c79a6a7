"""`engage-backtest`: parse the options, run `engage_seq.monitoring.backtest.rolling_backtest`,
write backtest.csv/.json/.md/.png and print a line per cutoff.

Exit status: 0 written, 2 bad usage or input (as engage-drift and engage-evaluate).
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import torch

from engage_seq.cli.args import KeywordArgumentParser
from engage_seq.data.schema import EventSchemaError
from engage_seq.monitoring.backtest import rolling_backtest
from engage_seq.monitoring.backtest_report import summary_text, write_backtest
from engage_seq.monitoring.errors import BacktestError


def build_parser() -> KeywordArgumentParser:
    parser = KeywordArgumentParser(
        prog="engage-backtest",
        description="Evaluate an exported artifact at successive later cutoffs of an event "
        "table (labels from the training code's label definition) and plot the metrics over "
        "time, per target. Writes backtest.csv/.json/.md/.png. Exit status 0: written, 2: bad "
        "usage or input. Options may be given as key=value (artifact=model.pt) or --key value.",
    )
    parser.add_argument("--artifact", required=True, help="engage-export artifact")
    parser.add_argument("--events", required=True, help="event table: Parquet/CSV, dir or glob")
    parser.add_argument("--start", help="first cutoff, ISO date/time or epoch seconds "
                        "(default: the run's test cutoff)")  # fmt: skip
    parser.add_argument("--every", default="7d", help="step between cutoffs (default 7d)")
    parser.add_argument("--count", type=int, help="at most this many cutoffs")
    parser.add_argument("--out", default="backtest", help="output folder (default: backtest/)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-plot", action="store_true", help="skip backtest.png")
    parser.add_argument("--require-signed", action="store_true", default=None,
                        help="refuse an artifact without a valid <artifact>.sig (default: "
                        "ENGAGE_SEQ_REQUIRE_SIGNED)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # key=value tokens become options; usage: exit 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.batch_size < 1:
            raise BacktestError(f"--batch-size must be at least 1, got {args.batch_size}")
        result = rolling_backtest(
            args.artifact,
            args.events,
            args.start,
            args.every,
            args.count,
            args.batch_size,
            require_signed=args.require_signed,
        )
        write_backtest(result, args.out, plot=not args.no_plot)
    except (BacktestError, EventSchemaError, OSError, pl.exceptions.PolarsError) as exc:
        print(f"engage-backtest: error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(result))
    print(f"-> {Path(args.out) / 'backtest.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
