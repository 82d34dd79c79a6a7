"""engage-drift: PSI / JS by hand, binning edge cases, and the command on drifted vs fresh
synthetic data (fires on the one, stays quiet on the other)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engage_seq.drift import (
    DriftError,
    FeatureDrift,
    binned_counts,
    build_parser,
    categorical_counts,
    duration_text,
    js_distance,
    keyword_argv,
    main,
    psi,
)
from engage_seq.schema import to_canonical
from engage_seq.sequences import CutoffPlan, HorizonTask, build_samples, parse_instant
from engage_seq.synthetic import SyntheticEventSource, generate_events

VENV_BIN = Path(sys.executable).parent
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
    assert [duration_text(h) for h in (8 / 3600, 0.2, 5.5, 80)] == ["8 s", "12 min", "5.5 h",
                                                                    "3.3 d"]  # fmt: skip


def test_keyword_arguments_become_options() -> None:
    parser = build_parser()
    argv = keyword_argv(
        ["reference=a.parquet", "current=events/date=2026-01-01", "threshold.channel=0.1",
         "--out", "x", "reference_start=2026-01-01"],
        parser,
    )  # fmt: skip
    assert argv == [
        "--reference=a.parquet",
        "--current=events/date=2026-01-01",
        "--feature-threshold", "channel=0.1",
        "--out", "x",
        "--reference-start=2026-01-01",
    ]  # fmt: skip
    assert keyword_argv(["date=2026-01-01/x.parquet"], parser) == ["date=2026-01-01/x.parquet"]
    assert keyword_argv(["threshold.num_x:present=3"], parser) == [
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
        "drift.csv",
        "drift.json",
        "drift.md",
        "drift.png",
    ]
    table = pl.read_csv(out / "drift.csv")
    assert table.columns[:6] == ["feature", "kind", "psi", "js_distance", "threshold", "verdict"]
    assert table.filter(pl.col("feature") == "channel")["verdict"].item() == "drift"
    assert "| channel |" in (out / "drift.md").read_text()
    assert (out / "drift.png").stat().st_size > 20_000
    for path in out.iterdir():
        if path.suffix != ".png":
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
        from engage_seq.drift import run

        run(build_parser().parse_args(
            [f"--reference={tables['reference']}", f"--current={tables['fresh']}",
             "--current-start=2027-01-01", "--no-plot"]
        ))  # fmt: skip
