"""`engage-score`: an exported artifact + a raw event table -> ``scores.parquet``.

Parses the flags, calls `engage_seq.serving.scoring.score_events` and prints its run report
in a few lines; exit code 1 (and one line on stderr) for input it cannot use.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from typing import Any

import torch

from engage_seq.data.schema import EventSchemaError
from engage_seq.serving.scoring import ScoreOptions, ScoringError, score_events


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engage-score",
        description="Score users with an exported artifact: raw events (Parquet or CSV) in, "
        "scores.parquet out (user id, score, rank and decile per target). Needs no Lightning "
        "or Hydra.",
    )
    parser.add_argument("artifact", help="TorchScript artifact written by engage-export")
    parser.add_argument("events", help="event table: Parquet file/dir/glob or CSV")
    parser.add_argument(
        "--out", default="scores.parquet",
        help="scores file (Parquet); <out>.report.json, written last, lists each file's SHA-256",
    )  # fmt: skip
    parser.add_argument(
        "--cutoff", help="score as of this ISO time or epoch second (default: just after the "
        "latest event; rows over a year ahead of now are dropped first); only earlier events count"
    )  # fmt: skip
    parser.add_argument("--suppress", help="do-not-contact list (Parquet/CSV of user ids): "
                        "scored and flagged, never in the top list")  # fmt: skip
    parser.add_argument("--top", help="also write the top K users (e.g. 1000) or K%% (e.g. 5%%)")
    parser.add_argument("--top-out", help="top list path (default: <out stem>_top.parquet)")
    parser.add_argument("--rank-by", help="target ranking the top list (default: the first)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument(
        "--shards", type=int, default=1,
        help="score the users in N hash-split parts, one in memory at a time (memory ~1/N; "
        "for tables that do not fit). The split files go next to --out and are removed",
    )  # fmt: skip
    parser.add_argument("--opt-out", help="opt-out list (Parquet/CSV of user ids): not scored")
    parser.add_argument(
        "--opt-out-must-match", action="store_true", default=None,
        help="refuse an --opt-out or --suppress list whose users are not all in the table "
        "(default: warn; or the training run's data.ingest.opt_out_must_match)",
    )  # fmt: skip
    parser.add_argument(
        "--max-drop-fraction", type=float,
        help="refuse tables losing more rows than this on ingest (default: the training run's)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--ids", choices=("raw", "key"), default="raw",
        help="raw: the table's user ids (to act on); key: the pseudonymous user_key",
    )  # fmt: skip
    parser.add_argument(
        "--allow-unverified", action="store_true", default=None,
        help="score an artifact that has no <artifact>.sha256 sidecar (hand-made or older "
        "exports); a sidecar that does not match is refused regardless",
    )  # fmt: skip
    parser.add_argument(
        "--require-signed", action="store_true", default=None,
        help="refuse an artifact without a valid <artifact>.sig (keys: ENGAGE_SEQ_SIGNING_KEYS; "
        "default: ENGAGE_SEQ_REQUIRE_SIGNED)",
    )  # fmt: skip
    return parser


def _options(args: argparse.Namespace) -> ScoreOptions:
    """Every flag but the positionals, ``--out`` and ``--threads`` is a ScoreOptions field."""
    return ScoreOptions(**{f.name: getattr(args, f.name) for f in fields(ScoreOptions)})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = score_events(args.artifact, args.events, args.out, _options(args))
    except (ScoringError, EventSchemaError, OSError) as exc:
        print(f"engage-score: error: {exc}", file=sys.stderr)
        return 1
    _print_summary(report, args.out)
    return 0


def _print_summary(report: dict[str, Any], out: str) -> None:
    print(
        f"scored {report['users_scored']:,} users as of {report['cutoff']} "
        f"({report['users_without_events_before_cutoff']:,} without earlier events, "
        f"{report['users_suppressed']:,} suppressed) in {report['seconds']['total']:.1f} s "
        f"({report['users_per_second']:,.0f} users/s) -> {out}"
    )
    dropped = {k: v for k, v in report["rows_dropped"].items() if v}
    merged = report.get("rows_merged_same_instant") or 0
    merged_text = f", {merged:,} line items merged into earlier rows" if merged else ""
    print(
        f"rows read {report['rows_read']:,}, kept {report['rows_kept']:,}, dropped {dropped}"
        + merged_text
    )
    missing = {
        f"{kind} {column}": n
        for kind in ("numeric", "categorical")
        for column, n in report[f"{kind}_missing"].items()
        if n
    }
    if missing:
        print(f"kept rows with a missing value (treated as missing): {missing}")
    if report["top"]:
        print(f"top list: {report['top']['written']:,} users (suppressed users left out)")


if __name__ == "__main__":
    raise SystemExit(main())
