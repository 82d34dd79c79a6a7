"""engage-drift: PSI / JS by hand, binning edge cases, and the command on drifted vs fresh
synthetic data (fires on the one, stays quiet on the other)."""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import VENV_BIN

from engage_seq.cli.args import keyword_argv
from engage_seq.cli.drift import build_parser, main
from engage_seq.common.times import gap_text, parse_instant
from engage_seq.data.schema import to_canonical
from engage_seq.data.sequences import CutoffPlan, build_samples, samples_at_cutoff, user_histories
from engage_seq.data.tasks import HorizonTask
from engage_seq.monitoring.distances import js_distance, psi
from engage_seq.monitoring.drift_features import feature_values
from engage_seq.monitoring.drift_inputs import DriftInput
from engage_seq.monitoring.drift_verdicts import ONE_SIDED, FeatureDrift
from engage_seq.monitoring.errors import DriftError
from engage_seq.monitoring.histograms import (
    OTHER,
    binned_counts,
    categorical_counts,
    pool_categories,
)
from engage_seq.serving.outputs import check_score_outputs
from engage_seq.synthetic.generator import SyntheticEventSource, generate_events

DRIFT_DAY = "2026-02-02"  # day 28 of 56
BASE = SyntheticEventSource(n_users=2000, days=56, seed=0, replenishment_share=0.6)


# --- the numbers ----------------------------------------------------------------------------


def test_psi_and_js_by_hand() -> None:
    same = np.array([30, 70])
    assert psi(same, same) == 0.0 and js_distance(same, same) == 0.0
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5) = 0.8789
    assert psi(np.array([50, 50]), np.array([90, 10]), smoothing=0.0) == pytest.approx(0.8789, 1e-4)
    assert psi(np.array([5, 5]), np.array([9, 1])) == pytest.approx(0.8789, 1e-3)  # shares count
    assert js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    # a category unseen in the reference is smoothed, not infinite: 5% new -> ~0.3
    assert 0.25 < psi(np.array([100, 0]), np.array([95, 5])) < 0.4


def test_the_noise_floor_matches_sampling_noise() -> None:
    """(K - 1)(1/n + 1/m) is what two samples of one population show: checked by simulation."""
    rng = np.random.default_rng(0)
    shares = np.full(10, 0.1)
    found = [psi(rng.multinomial(200, shares), rng.multinomial(300, shares)) for _ in range(400)]
    feature = FeatureDrift("x", "binned", [str(i) for i in range(10)], [20] * 10, [30] * 10,
                           threshold=0.25, watch=0.1)  # fmt: skip
    assert feature.noise == pytest.approx(9 * (1 / 200 + 1 / 300))
    assert np.mean(found) == pytest.approx(feature.noise, rel=0.15)
    assert feature.psi == 0.0 and feature.verdict == "ok"


def _lazy(values: list) -> pl.LazyFrame:
    return pl.LazyFrame({"value": values})


def test_categorical_counts_take_the_union_and_count_nulls() -> None:
    bins, ref, cur = categorical_counts(_lazy(["a", "a", "b", None]), _lazy(["a", "c", "c"]))
    assert dict(zip(bins, ref, strict=True)) == {"a": 2, "b": 1, "missing": 1, "c": 0}
    assert dict(zip(bins, cur, strict=True)) == {"a": 1, "b": 0, "missing": 0, "c": 2}


def test_binned_counts_use_reference_quantiles_and_a_missing_bin() -> None:
    reference = _lazy([float(v) for v in range(1, 101)])
    bins, ref, cur = binned_counts(reference, _lazy([0.5, 50.0, 500.0, None, None]), n_bins=10)
    assert len(bins) == 11 and bins[0].startswith("≤ ") and bins[-2].startswith("> ")
    assert bins[-1] == "missing"
    assert sum(ref) == 100 and all(9 <= n <= 11 for n in ref[:-1]) and ref[-1] == 0  # deciles
    assert cur[0] == 1 and cur[9] == 1 and sum(cur[3:6]) == 1 and cur[-1] == 2
    # ties collapse into fewer bins; no nulls: no missing bin
    bins, ref, _ = binned_counts(_lazy([1.0] * 50 + [2.0] * 50), _lazy([1.0, 3.0]), n_bins=10)
    assert bins == ["≤ 1", "(1, 2]", "> 2"] and ref == [50, 50, 0]


def test_duration_text_reads_in_the_right_unit() -> None:
    assert [gap_text(h) for h in (8 / 3600, 0.2, 5.5, 80)] == ["8 s", "12 min", "5.5 h",
                                                                    "3.3 d"]  # fmt: skip


def test_keyword_arguments_become_options() -> None:
    parser = build_parser()
    argv = keyword_argv(
        ["reference=a.parquet", "current=events/date=2026-01-01", "threshold.channel=0.1",
         "--out", "x", "reference_start=2026-01-01"],
        parser.option_names,
    )  # fmt: skip
    assert argv == [
        "--reference=a.parquet",
        "--current=events/date=2026-01-01",
        "--feature-threshold", "channel=0.1",
        "--out", "x",
        "--reference-start=2026-01-01",
    ]  # fmt: skip
    options = parser.option_names
    assert keyword_argv(["date=2026-01-01/x.parquet"], options) == ["date=2026-01-01/x.parquet"]
    assert keyword_argv(["threshold.num_x:present=3"], options) == [
        "--feature-threshold",
        "num_x:present=3",
    ]


# --- the command on synthetic data --------------------------------------------------------


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    """Reference, a fresh sample of the same data (other seed), and the reference's data with
    drift from day 28; compared over days 28-56."""
    root = tmp_path_factory.mktemp("drift")
    sources = {
        "reference": BASE,
        "fresh": replace(BASE, seed=1),
        "drifted": replace(BASE, drift_start=DRIFT_DAY),
    }
    paths = {}
    for name, source in sources.items():
        paths[name] = root / f"{name}.parquet"
        generate_events(source).write_parquet(paths[name])
    return paths


def _run(tables: dict[str, Path], current: str, out: Path, *extra: str) -> tuple[int, dict]:
    code = main(
        [
            f"reference={tables['reference']}",
            f"current={tables[current]}",
            f"reference_start={DRIFT_DAY}",
            f"current_start={DRIFT_DAY}",
            f"out={out}",
            *extra,
        ]
    )
    report = json.loads((out / "drift.json").read_text()) if (out / "drift.json").exists() else {}
    return code, report


def _psis(report: dict) -> dict[str, float]:
    return {f["name"]: round(f["psi"], 4) for f in report["features"]}


def test_drift_fires_on_drifted_data_and_stays_quiet_on_a_fresh_sample(tables, tmp_path) -> None:
    code, report = _run(tables, "drifted", tmp_path / "drifted")
    print("drifted vs reference PSI:", _psis(report))
    assert code == 1 and report["drift"]
    assert "channel" in report["drifted_features"]
    assert _psis(report)["channel"] > 0.35  # measured 0.45: web -> app, e-mail -> push

    code, quiet = _run(tables, "fresh", tmp_path / "fresh")
    print("fresh sample vs reference PSI:", _psis(quiet))
    assert code == 0 and not quiet["drift"]
    assert max(_psis(quiet).values()) < 0.05  # measured <= 0.007 with 2000 users
    assert set(_psis(quiet)) == {"event_type", "channel", "sequence_length", "gap_hours"}
    for f in quiet["features"]:
        assert f["verdict"] == "ok" and math.isclose(sum(f["reference_shares"]), 1.0)
    sizes = quiet["inputs"]["reference"]
    assert sizes["users"] > 1500 and sizes["events"] > 20_000 and sizes["kind"] == "events"


def test_outputs_are_complete_and_hold_no_user_ids(tables, tmp_path) -> None:
    out = tmp_path / "out"
    code, _ = _run(tables, "drifted", out)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == [
        ".drift.csv.lock",  # held while writing (score_outputs): no staging folder is left
        "drift.csv",
        "drift.json",
        "drift.md",
        "drift.png",
    ]
    # one unit: drift.json lists the SHA-256 of the other files, and they match
    manifest = check_score_outputs(out / "drift.csv", manifest=out / "drift.json")
    assert sorted(manifest["files"]) == ["drift.csv", "drift.md", "drift.png"]
    table = pl.read_csv(out / "drift.csv")
    assert table.columns[:6] == ["feature", "kind", "psi", "js_distance", "threshold", "verdict"]
    assert table.filter(pl.col("feature") == "channel")["verdict"].item() == "drift"
    assert "| channel |" in (out / "drift.md").read_text()
    assert (out / "drift.png").stat().st_size > 20_000
    for path in out.iterdir():
        if path.suffix not in (".png", ".lock"):
            text = path.read_text()
            assert not re.search(r"(?<!\\)\bu\d{4}\b", text), path  # ids look like u0042


def test_feature_thresholds_override_the_default(tables, tmp_path) -> None:
    code, report = _run(tables, "drifted", tmp_path / "a", "threshold.channel=0.9")
    psis = _psis(report)
    assert psis["channel"] < 0.9
    assert code == (1 if any(v >= 0.25 for k, v in psis.items() if k != "channel") else 0)
    code, report = _run(tables, "fresh", tmp_path / "b", "threshold=0.001", "watch=0.001")
    assert code == 1 and report["drift"]  # any noise counts at a silly threshold


def test_sample_files_are_compared_per_sample(tables, tmp_path) -> None:
    """Samples from the builder (recognised by their columns): n_history and the features'
    lists; a fresh sample is quiet, the drifted data fires. A sample's history reaches back
    before the drift, which dilutes it (channel PSI ~0.2 here against ~0.45 on the events of
    the drifted weeks), hence the lower threshold on both sides."""
    test = parse_instant("2026-02-23")
    plan = CutoffPlan(
        train=(test - 14 * 86_400,), val=(test - 7 * 86_400,), test=(test,), horizon_seconds=604_800
    )
    files = {}
    for name in ("reference", "fresh", "drifted"):
        events = to_canonical(pl.scan_parquet(tables[name]))
        files[name] = tmp_path / f"{name}_samples.parquet"
        samples = build_samples(events, HorizonTask(), plan, max_len=8)  # mostly post-drift
        samples.collect().write_parquet(files[name])
    options = ("reference_split=test", "current_split=test", "threshold=0.15")
    code, quiet = _run(files, "fresh", tmp_path / "s_fresh", *options)
    print("samples, fresh vs reference PSI:", _psis(quiet))
    assert code == 0 and max(_psis(quiet).values()) < 0.05
    assert quiet["inputs"]["current"]["kind"] == "samples"
    assert quiet["inputs"]["current"]["samples"] > 1500
    code, moved = _run(files, "drifted", tmp_path / "s_drift", *options)
    print("samples, drifted vs reference PSI:", _psis(moved))
    assert code == 1 and "channel" in moved["drifted_features"]


def test_attributes_are_compared_and_only_what_changed_drifts(tmp_path) -> None:
    """Two copies of one table whose order values differ by a factor 3: only that numeric
    attribute drifts. It is set on purchases only, so its nulls (their own bin) dilute the
    change (PSI ~0.05) and the values where present get a feature of their own; the declared
    categorical attribute is compared too."""
    events = generate_events(
        SyntheticEventSource(n_users=500, days=28, seed=2, user_attributes=True)
    )
    rng = np.random.default_rng(0)
    purchase = (events["event_type"] == "purchase").to_numpy()
    value = np.where(purchase, rng.lognormal(3.0, 0.5, events.height), np.nan)
    paths = {}
    for name, factor in (("reference", 1.0), ("current", 3.0)):
        paths[name] = tmp_path / f"{name}.csv"
        order_value = pl.Series(value * factor).fill_nan(None)
        events.with_columns(order_value=order_value).write_csv(paths[name])
    out = tmp_path / "out"
    code = main(
        [f"reference={paths['reference']}", f"current={paths['current']}",
         "numeric=order_value", "categorical=platform", f"out={out}", "--no-plot"]
    )  # fmt: skip
    report = json.loads((out / "drift.json").read_text())
    psis = _psis(report)
    assert code == 1 and report["drifted_features"] == ["num_order_value:present"]
    assert psis["num_order_value:present"] > 2.0
    assert 0.02 < psis["num_order_value"] < 0.1  # 2% of events carry a value
    unchanged = {k: v for k, v in psis.items() if not k.startswith("num_order_value")}
    assert unchanged == dict.fromkeys(
        ["event_type", "channel", "cat_platform", "sequence_length", "gap_hours"], 0.0
    )
    order_value = next(f for f in report["features"] if f["name"] == "num_order_value")
    assert order_value["bins"][-1] == "missing"
    assert order_value["reference_counts"][-1] == order_value["current_counts"][-1] > 0


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tables, tmp_path, capsys) -> None:
    samples = tmp_path / "samples.parquet"
    pl.DataFrame(
        {"split": ["test"], "cutoff": [1], "n_history": [1], "user_key": [7],
         "event_type": [["page_view"]], "channel": [["web"]], "log_gap_h": [[0.0]]}
    ).write_parquet(samples)  # fmt: skip
    cases = [
        ([f"reference={tmp_path / 'no.parquet'}", f"current={tables['fresh']}"], "no event files"),
        ([f"reference={tables['reference']}", f"current={samples}"], "two event tables"),
        ([f"reference={tables['reference']}", f"current={tables['fresh']}", "threshold.nope=1"],
         "unknown features ['nope']"),
        ([f"reference={tables['reference']}", f"current={tables['fresh']}", "current_start=soon"],
         "cannot read current_start"),
        ([f"reference={tables['reference']}", f"current={tables['fresh']}", "watch=0.5"],
         "watch <= threshold"),
    ]  # fmt: skip
    for argv, message in cases:
        out = tmp_path / "never"
        assert main([*argv, f"out={out}"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("engage-drift: error: ") and message in err and "\n" not in err
        assert not out.exists()


def test_console_script_help_and_exit_status(tables, tmp_path) -> None:
    done = subprocess.run(
        [VENV_BIN / "engage-drift", "--help"], capture_output=True, text=True, check=True
    )
    assert "key=value" in done.stdout and "Exit status" in done.stdout
    done = subprocess.run(
        [VENV_BIN / "engage-drift", f"reference={tables['reference']}",
         f"current={tables['drifted']}", f"reference_start={DRIFT_DAY}",
         f"current_start={DRIFT_DAY}", f"out={tmp_path}", "--no-plot"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "drift in channel" in done.stdout
    assert not (tmp_path / "drift.png").exists()


def test_an_event_window_must_hold_events(tables) -> None:
    with pytest.raises(DriftError, match="no events in the window"):
        from engage_seq.cli.drift import run

        run(build_parser().parse_args(
            [f"--reference={tables['reference']}", f"--current={tables['fresh']}",
             "--current-start=2027-01-01", "--no-plot"]
        ))  # fmt: skip


# --- privacy: identifier-like columns, pooled categories ------------------------------------


@pytest.fixture(scope="module")
def small_table(tmp_path_factory) -> Path:
    """300 users, 4 weeks, with the segment columns; written once."""
    path = tmp_path_factory.mktemp("small") / "events.parquet"
    events = generate_events(
        SyntheticEventSource(n_users=300, days=28, seed=2, user_attributes=True)
    )
    events.write_parquet(path)
    return path


def test_an_identifier_like_categorical_is_refused(small_table, tmp_path, capsys) -> None:
    """The reviewer's repro: user_id copied into ``email`` and declared categorical would list
    ids as bins; it is refused with one line naming the column, and nothing is written."""
    table = tmp_path / "with_email.parquet"
    events = pl.read_parquet(small_table)
    events.with_columns(email=pl.col("user_id") + "@example.com").write_parquet(table)
    out = tmp_path / "never"
    code = main([f"reference={table}", f"current={table}", "categorical=email", f"out={out}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err.startswith("engage-drift: error: ") and "\n" not in err
    assert "'email'" in err and "identifiers" in err and "--categorical" in err
    # a shared attribute of the same table is fine
    assert main([f"reference={table}", f"current={table}", "categorical=platform",
                 f"out={tmp_path / 'ok'}", "--no-plot"]) == 0  # fmt: skip


def test_pool_categories_keeps_the_largest_on_either_side() -> None:
    bins = ["a", "b", "c", "d", "new"]
    reference, current = [50, 30, 15, 5, 0], [40, 25, 10, 5, 20]
    kept, ref, cur, pooled = pool_categories(bins, reference, current, keep=3)
    # "new" is 20% of the current side, so it keeps its bin; c and d (<= 15%) are pooled
    assert kept == ["a", "b", "new", OTHER] and pooled == 2
    assert ref == [50, 30, 0, 20] and cur == [40, 25, 20, 15]
    assert pool_categories(bins, reference, current, keep=5) == (bins, reference, current, 0)


def test_many_categories_are_pooled_and_psi_is_computed_on_the_pooled_bins(
    small_table, tmp_path
) -> None:
    """60 values shared by 300 users (a long tail, not identifier-like): drift.json and drift.md
    list the 20 largest and "(other)", and the PSI is that of the listed counts."""
    events = pl.read_parquet(small_table)
    paths = {}
    for name, seed in (("reference", 0), ("current", 1)):
        rng = np.random.default_rng(seed)
        codes = rng.zipf(1.3, events.height) % 60  # a long tail of rare codes
        paths[name] = tmp_path / f"{name}.parquet"
        events.with_columns(code=pl.Series([f"code{c:02d}" for c in codes])).write_parquet(
            paths[name]
        )
    out = tmp_path / "out"
    main([f"reference={paths['reference']}", f"current={paths['current']}", "categorical=code",
          f"out={out}", "--no-plot"])  # fmt: skip
    report = json.loads((out / "drift.json").read_text())
    code = next(f for f in report["features"] if f["name"] == "cat_code")
    assert len(code["bins"]) == 21 and code["bins"][-1] == OTHER
    assert code["pooled_categories"] == 60 - 20 and report["max_categories"] == 20
    assert sum(code["reference_counts"]) == events.height  # nothing lost in the pooling
    assert code["psi"] == pytest.approx(
        psi(np.array(code["reference_counts"]), np.array(code["current_counts"]))
    )
    listed = set(code["bins"])
    text = (out / "drift.md").read_text() + (out / "drift.csv").read_text()
    rare = {f"code{c:02d}" for c in range(60)} - listed
    assert rare and not any(r in text for r in rare)
    # a smaller cap on the command line
    main([f"reference={paths['reference']}", f"current={paths['current']}", "categorical=code",
          f"out={out}", "--no-plot", "max_categories=5"])  # fmt: skip
    report = json.loads((out / "drift.json").read_text())
    code = next(f for f in report["features"] if f["name"] == "cat_code")
    assert len(code["bins"]) == 6 and code["pooled_categories"] == 55


# --- features present on one side only, gaps on both paths ---------------------------------


def _samples(extra: dict | None = None) -> pl.DataFrame:
    columns = {
        "split": ["test"] * 3, "cutoff": [100] * 3, "n_history": [2, 3, 1],
        "user_key": [1, 2, 3],
        "event_type": [["a", "b"], ["a", "a", "b"], ["b"]],
        "channel": [["web", "app"], ["web", "web", "app"], ["app"]],
        "log_gap_h": [[0.0, 1.0], [0.0, 0.5, 2.0], [0.0]],
    }  # fmt: skip
    return pl.DataFrame({**columns, **(extra or {})})


def test_a_feature_with_values_on_one_side_only_counts_as_drift(tmp_path, capsys) -> None:
    lone = FeatureDrift("cat_x", "categorical", ["p", "q"], [3, 4], [0, 0], 0.25, 0.1)
    assert lone.verdict == ONE_SIDED and lone.missing_in == "current"
    assert math.isnan(lone.psi) and lone.to_dict()["psi"] is None
    assert FeatureDrift("b", "binned", ["all"], [0], [0], 0.25, 0.1).verdict == "ok"
    reference, current = tmp_path / "reference.parquet", tmp_path / "current.parquet"
    _samples().write_parquet(reference)
    _samples({"cat_platform": [["ios", "ios"], ["web"] * 3, ["ios"]]}).write_parquet(current)
    out = tmp_path / "out"
    code = main([f"reference={reference}", f"current={current}", f"out={out}"])
    printed = capsys.readouterr().out
    report = json.loads((out / "drift.json").read_text())
    feature = next(f for f in report["features"] if f["name"] == "cat_platform")
    assert code == 1 and report["drifted_features"] == ["cat_platform"]
    assert feature["verdict"] == ONE_SIDED and feature["missing_in"] == "reference"
    assert feature["psi"] is None and feature["n_current"] == 6
    markdown = (out / "drift.md").read_text()
    assert "| cat_platform | n/a | n/a | 0.25 | missing on one side (no values in reference)" in (
        markdown
    )
    assert "no values in the reference data (6 in the current)" in markdown
    assert "drift in cat_platform" in printed and (out / "drift.png").exists()


def test_gap_hours_leave_out_first_events_on_both_paths() -> None:
    """Three users, every event before the cutoff: the sample file's gaps (log_gap_h, whose
    first entry is a placeholder 0 when the history reaches back to the first event) equal
    the event table's consecutive differences; a truncated history keeps its first gap."""
    raw = pl.LazyFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
            "timestamp": [0, 3600, 3 * 3600, 0, 7200, 0],  # epoch seconds
            "event_type": ["a", "b", "a", "a", "a", "b"],
            "channel": ["web"] * 6,
        }
    )
    events = to_canonical(raw).collect()
    histories = user_histories(events.lazy())
    cutoff = 10 * 3600

    def gaps(table: DriftInput) -> list[float]:
        values = feature_values(table)["gap_hours"][1].collect()["value"]
        return sorted(round(v, 3) for v in values.to_list())

    as_events = DriftInput("events", "e", events, events, {})
    full = samples_at_cutoff(histories, None, cutoff, "test", max_len=8).collect()
    assert gaps(as_events) == gaps(DriftInput("samples", "s", full, None, {})) == [1.0, 2.0, 2.0]
    truncated = samples_at_cutoff(histories, None, cutoff, "test", max_len=2).collect()
    # u1 keeps its last two events: both gaps are real (1 h before, 2 h); u2 its two: one gap
    assert gaps(DriftInput("samples", "s", truncated, None, {})) == [1.0, 2.0, 2.0]
    single = samples_at_cutoff(histories, None, cutoff, "test", max_len=1).collect()
    assert gaps(DriftInput("samples", "s", single, None, {})) == [2.0, 2.0]  # u1 and u2


# --- counts, usage and messages ---------------------------------------------------------------


def test_max_drop_fraction_zero_is_a_limit_and_drops_are_reported(
    small_table, tmp_path, capsys
) -> None:
    """One duplicated row: with the default limit it is dropped and drift.md says so (with
    the reason); with max_drop_fraction=0 (no artifact) it is an error, not ignored."""
    table = tmp_path / "duplicated.parquet"
    events = pl.read_parquet(small_table)
    no_channel = pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("channel"))
    pl.concat([events, events.head(1)]).with_columns(channel=no_channel).write_parquet(table)
    out = tmp_path / "out"
    assert main([f"reference={table}", f"current={small_table}", f"out={out}", "--no-plot"]) == 0
    markdown = (out / "drift.md").read_text()
    assert f"rows dropped on ingest: 1 of {events.height + 1:,} (duplicate_event 1)" in markdown
    assert markdown.count("rows dropped on ingest") == 1  # the current side dropped nothing
    assert markdown.count("kept rows with a missing value: channel 1") == 1
    report = json.loads((out / "drift.json").read_text())
    assert report["inputs"]["reference"]["rows_dropped"]["duplicate_event"] == 1
    assert report["inputs"]["reference"]["categorical_missing"] == {"channel": 1}
    capsys.readouterr()
    never = tmp_path / "never"
    argv = [f"reference={table}", f"current={small_table}", f"out={never}"]
    assert main([*argv, "max_drop_fraction=0"]) == 2
    err = capsys.readouterr().err
    assert "max_drop_fraction=0" in err and "duplicate_event" in err and not never.exists()
    assert main([*argv, "max_drop_fraction=1.5"]) == 2
    assert "--max-drop-fraction must be in [0, 1]" in capsys.readouterr().err


def test_a_missing_column_names_this_commands_options(small_table, tmp_path, capsys) -> None:
    table = tmp_path / "renamed.csv"
    pl.read_parquet(small_table).rename({"user_id": "customer"}).write_csv(table)
    argv = [f"reference={table}", f"current={table}", f"out={tmp_path / 'never'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks column(s): user_id -> 'user_id'" in err and "'customer'" in err
    assert "--user-id" in err and "--artifact" in err and "data.columns" not in err
    assert "\n" not in err
    assert main([*argv, "user_id=customer", "--no-plot"]) == 0
    assert main([*argv, "categorical=nope"]) == 2
    assert "categorical 'nope' -> 'nope'" in capsys.readouterr().err


def test_write_drift_report_is_the_library_name() -> None:
    import engage_seq.monitoring.drift_report as drift

    assert callable(drift.write_drift_report) and not hasattr(drift, "write_report")
