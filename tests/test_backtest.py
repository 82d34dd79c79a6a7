"""engage-backtest: a model trained before the generator's drift date keeps its test metrics
until the drift and loses them after it; engage-drift with the artifact compares scores."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from engage_seq.backtest import (
    BacktestError,
    backtest_cutoffs,
    horizon_task,
    main,
    rolling_backtest,
)
from engage_seq.drift import main as drift_main
from engage_seq.export import export_artifact
from engage_seq.sequences import parse_instant
from engage_seq.synthetic import SyntheticEventSource
from engage_seq.train import CONF_DIR, train

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
    task = horizon_task({"task": {"name": "p", "targets": ["purchase"], "horizon": "7d"}})
    assert task.targets == ("purchase",) and task.horizon_seconds == 7 * DAY
    with pytest.raises(BacktestError, match="no horizon target"):
        horizon_task({"task": {"name": "next_event", "targets": [], "horizon": None}})


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
        "backtest.csv",
        "backtest.json",
        "backtest.md",
        "backtest.png",
    ]
    report = json.loads((out / "backtest.json").read_text())
    assert [r["cutoff"][:10] for r in report["rows"]] == ["2026-02-16", "2026-03-02", "2026-03-16"]
    assert report["training_test_metrics"]["auroc"] > 0.7
    assert all(not math.isnan(r["auroc"]) for r in report["rows"])
    assert "| 2026-03-16 |" in (out / "backtest.md").read_text()
    assert (out / "backtest.png").stat().st_size > 20_000
    assert "training test ROC-AUC" in capsys.readouterr().out


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_status_1(trained, tmp_path, capsys) -> None:
    cases = [
        ([f"artifact={tmp_path / 'missing.pt'}", f"events={trained['events']}"], "does not exist"),
        ([f"artifact={trained['artifact']}", f"events={trained['events']}", "start=2026-04-10"],
         "full 7d label window"),
        ([f"artifact={trained['artifact']}", f"events={trained['events']}", "every=weekly"],
         "every: cannot parse duration"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main([*argv, f"out={tmp_path / 'never'}"]) == 1
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
