"""engage-backtest: a model trained before the generator's drift date keeps its test metrics
until the drift and loses them after it; engage-drift with the artifact compares scores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from engage_seq.cli.backtest import main
from engage_seq.cli.drift import main as drift_main
from engage_seq.common.config_dir import CONF_DIR
from engage_seq.common.times import parse_instant
from engage_seq.experiments.run import train
from engage_seq.monitoring.backtest import rolling_backtest
from engage_seq.monitoring.backtest_report import markdown, summary_text, write_backtest
from engage_seq.monitoring.backtest_result import BacktestResult
from engage_seq.monitoring.backtest_schedule import backtest_cutoffs, horizon_task
from engage_seq.monitoring.errors import BacktestError
from engage_seq.serving.export import export_artifact
from engage_seq.serving.outputs import check_score_outputs
from engage_seq.synthetic import SyntheticEventSource

DAY = 86_400
DRIFT = "2026-03-09"  # day 63 of 98
TEST_CUTOFF = "2026-02-16"  # day 42: the run's test window ends three weeks before the drift
SOURCE = SyntheticEventSource(
    n_users=4000, days=98, seed=3, replenishment_share=0.6, drift_start=DRIFT
)


def test_cutoffs_step_forward_while_the_label_window_fits() -> None:
    assert backtest_cutoffs(0, 7, 7, 35) == [0, 7, 14, 21, 28]
    assert backtest_cutoffs(0, 7, 7, 34) == [0, 7, 14, 21]
    assert backtest_cutoffs(0, 7, 7, 35, count=2) == [0, 7]
    assert backtest_cutoffs(0, 3, 7, 14) == [0, 3, 6]  # overlapping windows are allowed
    assert backtest_cutoffs(30, 7, 7, 35) == []


def test_only_horizon_artifacts_are_backtested() -> None:
    task = horizon_task({"name": "p", "targets": ["purchase"], "horizon": "7d"})
    assert task.targets == ("purchase",) and task.horizon_seconds == 7 * DAY
    with pytest.raises(BacktestError, match="no horizon target"):
        horizon_task({"name": "next_event", "targets": [], "horizon": None})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A GRU trained on the drifted source's first 49 days (identical to the undrifted data:
    nothing after the drift date is used), exported, and the full 98-day event table."""
    root = tmp_path_factory.mktemp("backtest")
    overrides = [
        "data=synthetic_tiny",
        "model=gru",
        "trainer=smoke",
        "report.enabled=false",  # the run report is not under test here
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=null",
        "batch_size=128",
        "data.sampling.max_len=64",
        f"data.sampling.test_cutoff={TEST_CUTOFF}",
        f"cache_dir={root / 'cache'}",
        *(
            f"data.source.{key}={getattr(SOURCE, key)}"
            for key in ("n_users", "days", "seed", "replenishment_share", "drift_start")
        ),
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    train(cfg, root / "run")
    artifact = export_artifact(root / "run", root / "model.pt").path
    events = root / "events.parquet"
    SOURCE.scan().collect().write_parquet(events)
    fresh = root / "fresh.parquet"  # another sample of the same (drifted) world
    replace(SOURCE, seed=4).scan().collect().write_parquet(fresh)
    return {"artifact": artifact, "events": events, "fresh": fresh, "root": root}


@pytest.fixture(scope="module")
def backtest(trained):
    return rolling_backtest(trained["artifact"], trained["events"])


@pytest.mark.slow
def test_the_first_cutoff_reproduces_the_runs_test_metrics(backtest) -> None:
    """Same data, same cutoff, same label code, same metric code: the same numbers."""
    first = backtest.rows.row(0, named=True)
    assert first["cutoff"].startswith(TEST_CUTOFF)
    for metric in ("auroc", "auprc", "logloss", "positive_rate"):
        assert first[metric] == pytest.approx(backtest.reference[metric], abs=1e-4), metric
    assert first["n_users"] == int(backtest.reference["n_samples"])


@pytest.mark.slow
def test_roc_auc_drops_after_the_drift(backtest) -> None:
    rows = backtest.rows
    print(rows.select("cutoff", "n_users", "positive_rate", "auroc", "ece"))
    drift = parse_instant(DRIFT)
    cutoffs = np.array([parse_instant(c) for c in rows["cutoff"]])
    auroc = rows["auroc"].to_numpy()
    before, after = auroc[cutoffs + 7 * DAY <= drift], auroc[cutoffs >= drift]
    assert before.size == 3 and after.size >= 4  # days 42, 49, 56 | 63, 70, 77, 84 (91)
    # measured: 0.77-0.80 before, 0.62-0.72 after; the noise of one point is ~0.02
    assert after.mean() < before.mean() - 0.06
    assert after.max() < before.min()


@pytest.mark.slow
def test_cli_writes_table_json_markdown_and_plot(trained, tmp_path, capsys) -> None:
    out = tmp_path / "bt"
    code = main(
        [f"artifact={trained['artifact']}", f"events={trained['events']}", "every=14d",
         "count=3", f"out={out}"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        ".backtest.csv.lock",  # held while writing (score_outputs): no staging folder is left
        "backtest.csv",
        "backtest.json",
        "backtest.md",
        "backtest.png",
    ]
    # one unit: backtest.json lists the SHA-256 of the other files, and they match
    check_score_outputs(out / "backtest.csv", manifest=out / "backtest.json")
    report = json.loads((out / "backtest.json").read_text())
    assert [r["cutoff"][:10] for r in report["rows"]] == ["2026-02-16", "2026-03-02", "2026-03-16"]
    assert report["training_test_metrics"]["auroc"] > 0.7
    assert all(not math.isnan(r["auroc"]) for r in report["rows"])
    assert "| 2026-03-16 |" in (out / "backtest.md").read_text()
    first = report["rows"][0]  # per-cutoff eligibility counts; n_samples (= n_users) is gone
    assert "n_samples" not in first and "dropped/min_history_events" in first
    assert first["n_candidates"] == first["n_users"] + sum(
        v for k, v in first.items() if k.startswith("dropped/")
    )
    assert "rows read" in (out / "backtest.md").read_text()
    assert (out / "backtest.png").stat().st_size > 20_000
    assert "training test ROC-AUC" in capsys.readouterr().out


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_status_2(trained, tmp_path, capsys) -> None:
    """Bad input exits 2, as engage-drift (whose 1 means drift) and engage-evaluate do."""
    cases = [
        ([f"artifact={tmp_path / 'missing.pt'}", f"events={trained['events']}"], "does not exist"),
        ([f"artifact={trained['artifact']}", f"events={trained['events']}", "start=2026-04-10"],
         "full 7d label window"),
        ([f"artifact={trained['artifact']}", f"events={trained['events']}", "every=weekly"],
         "every: cannot parse duration"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main([*argv, f"out={tmp_path / 'never'}"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("engage-backtest: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_drift_with_the_artifact_compares_score_distributions(trained, tmp_path) -> None:
    """Four weeks before the drift against four weeks after it: the scores move too; a fresh
    sample of the same weeks stays quiet, scores included."""
    before = ["reference_start=2026-02-09", f"reference_end={DRIFT}"]

    def run(current: Path, *window: str) -> dict:
        out = tmp_path / current.stem / window[0][-10:]
        drift_main(
            [f"reference={trained['events']}", f"current={current}",
             f"artifact={trained['artifact']}", f"out={out}", *before, *window, "--no-plot"]
        )  # fmt: skip
        return json.loads((out / "drift.json").read_text())

    moved = run(trained["events"], "current_start=2026-03-09", "current_end=2026-04-06")
    quiet = run(trained["fresh"], "current_start=2026-02-09", f"current_end={DRIFT}")
    psi = {f["name"]: f["psi"] for f in moved["features"]}
    noise = {f["name"]: f["psi"] for f in quiet["features"]}
    print("after vs before the drift PSI:", {k: round(v, 3) for k, v in psi.items()})
    print("fresh sample, same weeks PSI:", {k: round(v, 3) for k, v in noise.items()})
    scored_at = moved["inputs"]["scored_at"]  # 1 s after each window's last event
    assert scored_at["reference"] < DRIFT < scored_at["current"]
    assert psi["channel"] > 0.25 and moved["drift"]
    assert not quiet["drift"] and noise["score_purchase"] < 0.05
    assert psi["score_purchase"] > 2 * noise["score_purchase"]


# --- outputs of a multi-target artifact, on hand-built results (milliseconds) ---------------

TARGETS = ("purchase", "add_to_cart", "email_click")


def _hand_built(targets: tuple[str, ...] = TARGETS) -> BacktestResult:
    """Two cutoffs; each target's metrics differ, so a macro mean cannot pass for one."""
    rows = []
    for i, cutoff in enumerate(("2026-02-16T00:00:00+00:00", "2026-02-23T00:00:00+00:00")):
        row = {"cutoff": cutoff, "n_users": 900 - i, "n_candidates": 1000,
               "dropped/min_history_events": 100 + i}  # fmt: skip
        per_target = {}
        for j, t in enumerate(targets):
            row[f"positives/{t}"] = 10 * (j + 1)
            per_target[t] = {"auroc": 0.9 - 0.1 * j - 0.01 * i, "auprc": 0.5 - 0.1 * j,
                             "logloss": 0.2 + j, "ece": 0.01 * (j + 1), "lift_top10": 3.0 - j,
                             "brier": 0.05, "positive_rate": 0.2 * (j + 1) / 3,
                             "mean_prediction": 0.2 * (j + 1) / 3 + 0.01}  # fmt: skip
        for m in per_target[targets[0]]:
            row[m] = sum(per_target[t][m] for t in targets) / len(targets)
            if len(targets) > 1:
                row.update({f"{m}/{t}": per_target[t][m] for t in targets})
        rows.append(row)
    reference = {"auroc": rows[0]["auroc"], "n_samples": 900.0}
    if len(targets) > 1:
        reference.update({f"auroc/{t}": rows[0][f"auroc/{t}"] for t in targets})
    inputs = {"artifact": "model.pt", "events": "events.parquet", "task": "engagement_7d",
              "every": "7d", "rows_read": 5000, "rows_kept": 4990,
              "rows_dropped": {"duplicate_event": 10, "null_user": 0}, "users": 1000,
              "eligibility": {"min_history_events": 2}}  # fmt: skip
    return BacktestResult(pl.DataFrame(rows), reference, inputs)


def test_several_targets_are_reported_per_target_and_the_macro_mean_is_labelled() -> None:
    result = _hand_built()
    assert result.targets == list(TARGETS)
    click = result.target_rows("email_click")
    assert click["auroc"].to_list() == pytest.approx([0.7, 0.69])
    assert click["positives"].to_list() == [30, 30]
    text = markdown(result)
    for target in TARGETS:
        assert f"## {target}" in text
    assert "## Macro mean over the 3 targets" in text
    assert "(3 targets: purchase, add_to_cart, email_click)" in text
    purchase = text[text.index("## purchase") : text.index("## add_to_cart")]
    assert "| 2026-02-16 | 900 | 10 | 0.067 | 0.900 |" in purchase
    assert "Training run's test split: auroc 0.900." in purchase
    assert "Training run's test split (macro): auroc 0.800." in text
    printed = summary_text(result)
    assert "2026-02-16  email_click  users      900  positive rate 0.200  ROC-AUC 0.700" in printed
    assert "2026-02-16  macro mean   users      900  positive rate 0.133  ROC-AUC 0.800" in printed
    assert "training test ROC-AUC: purchase 0.900, add_to_cart 0.800, email_click 0.700, " \
           "macro mean 0.800" in printed  # fmt: skip


def test_counts_read_kept_and_dropped_are_shown() -> None:
    text = markdown(_hand_built())
    assert (
        "- events: 5,000 rows read, 4,990 kept (dropped: duplicate_event 10); 1,000 users" in text
    )
    assert "| cutoff | with an event before | dropped: min_history_events | scored |" in text
    assert "| 2026-02-23 | 1,000 | 101 | 899 |" in text


def test_a_single_target_keeps_one_table_under_plain_names() -> None:
    result = _hand_built(("purchase",))
    assert {"cutoff", "n_users", "positive_rate", "auroc", "ece"} <= set(result.rows.columns)
    assert result.target_rows("purchase")["auroc"].to_list() == result.rows["auroc"].to_list()
    text = markdown(result)
    assert "## purchase" not in text and "Macro" not in text
    assert "| cutoff | users | positives | positive rate | auroc |" in text
    assert summary_text(result).endswith("training test ROC-AUC 0.900")
    assert "macro" not in summary_text(result)


def test_the_plot_draws_one_line_per_target(tmp_path) -> None:
    from engage_seq.monitoring.figures import plot_backtest

    figure = plot_backtest(_hand_built())
    auroc = figure.axes[0]
    assert auroc.get_title().startswith("ROC-AUC")
    labels = [line.get_label() for line in auroc.get_lines() if line.get_marker() == "o"]
    assert labels == list(TARGETS)  # no macro line: it would hide which target moved
    dashed = [line for line in auroc.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 3  # each target's training test value
    files = write_backtest(_hand_built(), tmp_path / "bt")
    assert files["png"].stat().st_size > 20_000
    written = json.loads(files["json"].read_text())
    assert "auroc/email_click" in written["rows"][0] and "n_samples" not in written["rows"][0]


def test_start_may_be_epoch_seconds_or_iso() -> None:
    from engage_seq.monitoring.backtest_schedule import first_cutoff as _first_cutoff

    at = parse_instant(TEST_CUTOFF)
    assert _first_cutoff(str(at), []) == _first_cutoff(TEST_CUTOFF, []) == at
    with pytest.raises(BacktestError, match="cannot read start 'soon'"):
        _first_cutoff("soon", [])


# --- a real multi-target artifact (engagement_7d: purchase, add_to_cart, email_click) --------

MULTI_TEST_CUTOFF = "2026-02-09"  # day 35: cutoffs 35 and 42 (49 + 7d passes the last event)


@pytest.fixture(scope="module")
def multi_target(tmp_path_factory) -> dict[str, Path]:
    """A GRU for engagement_7d with min_history_events=3 (so eligibility drops users)."""
    root = tmp_path_factory.mktemp("backtest_multi")
    overrides = [
        "data=synthetic_tiny",
        "task=engagement_7d",
        "model=gru",
        "trainer=smoke",
        "report.enabled=false",
        "trainer.max_epochs=2",
        "batch_size=128",
        "data.sampling.min_history_events=3",
        f"data.sampling.test_cutoff={MULTI_TEST_CUTOFF}",
        f"cache_dir={root / 'cache'}",
        "data.source.n_users=800",
        "data.source.days=56",
        "data.source.seed=5",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    train(cfg, root / "run")
    artifact = export_artifact(root / "run", root / "model.pt").path
    events = root / "events.parquet"  # the very table the run trained on (see backtest.py)
    instantiate(cfg.data.source).scan().collect().write_parquet(events)
    return {"artifact": artifact, "events": events}


@pytest.mark.slow
def test_a_multi_target_backtest_reproduces_each_targets_test_metrics(
    multi_target, tmp_path, capsys
) -> None:
    result = rolling_backtest(multi_target["artifact"], multi_target["events"])
    assert result.targets == list(TARGETS)
    first = result.rows.row(0, named=True)
    assert first["cutoff"].startswith(MULTI_TEST_CUTOFF) and result.rows.height == 2
    assert "n_samples" not in result.rows.columns  # it was n_users again
    for target in TARGETS:
        row = result.target_rows(target).row(0, named=True)
        reference = result.target_reference(target)
        for metric in ("auroc", "positive_rate", "logloss"):
            assert row[metric] == pytest.approx(reference[metric], abs=1e-4), (target, metric)
    assert first["auroc"] == pytest.approx(result.reference["auroc"], abs=1e-4)  # the macro
    # the run's eligibility rule dropped users, counted per cutoff
    for row in result.rows.iter_rows(named=True):
        assert row["dropped/min_history_events"] > 0
        assert row["n_users"] + row["dropped/min_history_events"] == row["n_candidates"]
    out = tmp_path / "bt"
    assert main([f"artifact={multi_target['artifact']}", f"events={multi_target['events']}",
                 f"out={out}"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.count("macro mean") == 3 and printed.count("email_click") == 3  # + ROC-AUC
    text = (out / "backtest.md").read_text()
    assert "## Macro mean over the 3 targets" in text and "## add_to_cart" in text
    assert "rows read" in text and "min_history_events" in text


@pytest.mark.slow  # starts the console script
def test_help_states_the_exit_status_and_usage_errors_exit_2(capsys) -> None:
    done = subprocess.run(
        [Path(sys.executable).parent / "engage-backtest", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Exit status 0: written, 2: bad usage or input" in " ".join(done.stdout.split())
    with pytest.raises(SystemExit) as exit_info:
        main(["events=x.parquet"])  # no artifact
    assert exit_info.value.code == 2 and "--artifact" in capsys.readouterr().err
