"""engage_seq.cli.args: key=value next to --key value, instants as epoch seconds or ISO text, and
an import that costs nothing (the monitors load it before they know whether torch is needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engage_seq.cli.args import KeywordArgumentParser, keyword_argv, parse_instant_arg


def _parser() -> KeywordArgumentParser:
    parser = KeywordArgumentParser(prog="demo")
    parser.add_argument("--reference-start")
    parser.add_argument("--out", default="x")
    parser.add_argument("--feature-threshold", action="append", default=[])
    parser.add_argument("--no-plot", action="store_true")
    return parser


def test_the_parser_records_its_options_and_takes_both_forms() -> None:
    parser = _parser()
    assert parser.option_names == {"h", "help", "reference_start", "out", "feature_threshold",
                                   "no_plot"}  # fmt: skip
    args = parser.parse_args(["reference_start=2026-01-01", "--out", "y", "threshold.a=0.1"])
    assert args.reference_start == "2026-01-01" and args.out == "y"
    assert args.feature_threshold == ["a=0.1"] and not args.no_plot
    args = parser.parse_args(["--reference-start", "2026-01-01", "out=a=b", "--no-plot"])
    assert args.out == "a=b" and args.no_plot  # only the first '=' splits


def test_unknown_keys_and_paths_with_equals_are_left_alone() -> None:
    options = _parser().option_names
    assert keyword_argv(["events/date=2026-01-01", "nope=1"], options) == [
        "events/date=2026-01-01",
        "nope=1",
    ]
    assert keyword_argv(["threshold.x=1"], {"out"}) == ["threshold.x=1"]  # no per-feature option
    with pytest.raises(SystemExit) as exit_info:  # argparse: a usage error is exit status 2
        _parser().parse_args(["nope=1"])
    assert exit_info.value.code == 2


def test_instants_are_epoch_seconds_or_iso() -> None:
    assert parse_instant_arg(None, "start") is None
    assert parse_instant_arg("1771200000", "start") == 1_771_200_000
    assert parse_instant_arg("-60", "start") == -60
    assert parse_instant_arg("2026-02-16", "start") == 1_771_200_000
    assert parse_instant_arg("2026-02-16T01:00:00+01:00", "start") == 1_771_200_000
    with pytest.raises(ValueError, match="cannot read start 'soon': give an ISO date/time"):
        parse_instant_arg("soon", "start")

    class Mine(ValueError):
        pass

    with pytest.raises(Mine, match="current_end"):
        parse_instant_arg("2026-13-01", "current_end", Mine)


def test_importing_it_loads_only_the_standard_library() -> None:
    code = (
        "import json, sys, engage_seq.cli.args; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & {"torch", "lightning", "hydra", "polars", "numpy"}, loaded
