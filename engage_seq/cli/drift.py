"""`engage-drift`: parse the options, compare (`engage_seq.monitoring.drift.detect_drift`),
write drift.md/.csv/.json/.png, print one line per feature and the verdict.

Exit status: 0 no feature at or above its threshold, 1 drift (some feature is, or has values
on one side only), 2 bad usage or input. Torch is loaded only with ``--artifact``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from engage_seq.cli.args import KeywordArgumentParser
from engage_seq.common.times import parse_instant_arg
from engage_seq.data.schema import EventSchemaError
from engage_seq.monitoring.drift import DriftSide, detect_drift
from engage_seq.monitoring.drift_inputs import ColumnOverrides, Window
from engage_seq.monitoring.drift_report import number_text, write_drift_report
from engage_seq.monitoring.drift_verdicts import (
    DEFAULT_THRESHOLD,
    WATCH_THRESHOLD,
    DriftReport,
    severity_order,
)
from engage_seq.monitoring.errors import DriftError
from engage_seq.monitoring.histograms import MAX_CATEGORIES, OTHER, QUANTILE_BINS


def _feature_thresholds(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise DriftError(f"threshold.{name} must be a number, got {value!r}") from None
    return out


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def build_parser() -> KeywordArgumentParser:
    parser = KeywordArgumentParser(
        prog="engage-drift",
        description="Compare a current event table (or sample file) with a reference: PSI and "
        "Jensen-Shannon distance per feature (event types, channels, sequence length, gaps, "
        "attributes, and with an artifact the scores). Writes drift.md/.csv/.json/.png. Exit "
        "status 0: no drift, 1: some feature at or above its threshold or with values on one "
        "side only, 2: bad input. Options may be given as key=value (reference=a.parquet) or "
        "--key value.",
    )
    parser.add_argument("--reference", required=True, help="reference events or samples")
    parser.add_argument("--current", required=True, help="current events or samples")
    parser.add_argument("--artifact", help="engage-export artifact: adds the score distribution "
                        "and reads event tables with its column mapping")  # fmt: skip
    parser.add_argument("--out", default="drift", help="output folder (default: drift/)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"PSI that counts as drift (default {DEFAULT_THRESHOLD})")  # fmt: skip
    parser.add_argument("--watch", type=float, default=WATCH_THRESHOLD,
                        help=f"PSI reported as 'watch' (default {WATCH_THRESHOLD})")  # fmt: skip
    parser.add_argument(
        "--feature-threshold", action="append", default=[], metavar="FEATURE=PSI",
        help="per-feature threshold, repeatable (key=value form: threshold.channel=0.1)",
    )  # fmt: skip
    parser.add_argument("--bins", type=int, default=QUANTILE_BINS, help="quantile bins")
    parser.add_argument("--max-categories", type=int, default=MAX_CATEGORIES,
                        help="categories kept per categorical feature, the rest pooled as "
                        f"'{OTHER}' (default {MAX_CATEGORIES})")  # fmt: skip
    for side in ("reference", "current"):
        parser.add_argument(f"--{side}-start", help=f"keep {side} events (samples: cutoffs) "
                            "from this ISO date/time (or epoch seconds) on")  # fmt: skip
        parser.add_argument(f"--{side}-end", help="... and before this one")
        parser.add_argument(f"--{side}-split", help="sample files: keep this split only")
    parser.add_argument("--categorical", help="extra categorical columns, comma-separated")
    parser.add_argument("--numeric", help="extra numeric columns, comma-separated")
    parser.add_argument("--user-id", help="user id column (default: user_id)")
    parser.add_argument("--timestamp", help="timestamp column (default: timestamp)")
    parser.add_argument(
        "--event-type",
        help="event type column (default: event_type; '' for none: every row is a purchase)",
    )
    parser.add_argument("--channel", help="channel column (default: channel; '' for none)")
    parser.add_argument(
        "--max-drop-fraction",
        type=float,
        help="ingest drop limit, 0 to 1 (default: the artifact's, else 0.05)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip drift.png")
    parser.add_argument("--require-signed", action="store_true", default=None,
                        help="refuse an --artifact without a valid <artifact>.sig (default: "
                        "ENGAGE_SEQ_REQUIRE_SIGNED)")  # fmt: skip
    return parser


def _side(args: argparse.Namespace, side: str) -> DriftSide:
    window = Window(
        parse_instant_arg(getattr(args, f"{side}_start"), f"{side}_start", DriftError),
        parse_instant_arg(getattr(args, f"{side}_end"), f"{side}_end", DriftError),
    )
    return DriftSide(getattr(args, side), window, getattr(args, f"{side}_split"))


def run(args: argparse.Namespace) -> DriftReport:
    """The command without its exit status: read, compare, write."""
    columns = ColumnOverrides(
        user_id=args.user_id,
        timestamp=args.timestamp,
        event_type=args.event_type,
        channel=args.channel,
        categorical=_names(args.categorical),
        numeric=_names(args.numeric),
    )
    report = detect_drift(
        _side(args, "reference"),
        _side(args, "current"),
        artifact=args.artifact,
        require_signed=args.require_signed,
        columns=columns,
        max_drop_fraction=args.max_drop_fraction,
        threshold=args.threshold,
        watch=args.watch,
        feature_thresholds=_feature_thresholds(args.feature_threshold),
        n_bins=args.bins,
        max_categories=args.max_categories,
    )
    write_drift_report(report, args.out, plot=not args.no_plot)
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # key=value tokens become options; usage: exit 2
    try:
        report = run(args)
    except (DriftError, EventSchemaError, OSError, pl.exceptions.PolarsError) as exc:
        print(f"engage-drift: error: {exc}", file=sys.stderr)
        return 2
    width = max(len(f.name) for f in report.features)
    for f in severity_order(report.features):
        psi, js = number_text(f.psi, "7.3f"), number_text(f.js_distance, "5.3f")
        print(
            f"{f.name:<{width}}  PSI {psi}  JS {js}  {f.verdict}"
            + (f" (no values in {f.missing_in})" if f.missing_in else "")
        )
    names = ", ".join(f.name for f in report.drifted)
    verdict = f"drift in {names}" if names else "no drift"
    print(f"{verdict} (threshold {args.threshold:g}) -> {Path(args.out) / 'drift.md'}")
    return 1 if report.drifted else 0


if __name__ == "__main__":
    raise SystemExit(main())
