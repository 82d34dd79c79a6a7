"""engage-sweep-report on hand-made multirun folders with known numbers."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import polars as pl
import pytest

from engage_seq.cli.sweep_report import main
from engage_seq.common.stats import student_t_two_sided_p
from engage_seq.experiments import leaderboard_markdown as sweep_report
from engage_seq.experiments.leaderboard import analyse_sweep
from engage_seq.experiments.leaderboard_files import write_report
from engage_seq.experiments.leaderboard_plot import plot_sweep
from engage_seq.experiments.sweep_statistics import paired_comparison
from engage_seq.metrics.direction import metric_direction

# (model, hidden, seed) -> val/auroc; lstm-64 beats transformer-64 on every seed by ~0.01.
SCORES = {
    ("lstm", "32", "1"): 0.850,
    ("lstm", "32", "2"): 0.852,
    ("lstm", "32", "3"): 0.848,
    ("lstm", "64", "1"): 0.880,
    ("lstm", "64", "2"): 0.882,
    ("lstm", "64", "3"): 0.879,
    ("transformer", "32", "1"): 0.860,
    ("transformer", "32", "2"): 0.861,
    ("transformer", "32", "3"): 0.859,
    ("transformer", "64", "1"): 0.870,
    ("transformer", "64", "2"): 0.871,
    ("transformer", "64", "3"): 0.870,
}


def _write_run(
    root: Path,
    name: str,
    overrides: list[str],
    metrics: dict[str, float] | None,
    optimized: str = "val/auroc",
) -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "config_resolved.yaml").write_text(f"optimized_metric: {optimized}\nseed: 1\n")
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))


def _grid(root: Path, scores: dict[tuple[str, str, str], float] = SCORES) -> Path:
    for i, ((model, hidden, seed), score) in enumerate(sorted(scores.items())):
        overrides = [f"model={model}", f"model.hidden={hidden}", f"seed={seed}", "sweep=grid"]
        metrics = {"val/auroc": score, "test/auroc": score + 0.01, "train/fit_seconds": 10.0 + i}
        _write_run(root, f"{i}_{model}_{hidden}_{seed}", overrides, metrics)
    (root / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - model=lstm,transformer\n"
        "    - model.hidden=32,64\n    - seed=1,2,3\n"
    )
    return root


def test_student_t_matches_closed_forms() -> None:
    for t in (0.0, 0.5, 1.0, 2.5, 10.0):
        cauchy = 1.0 - 2.0 * math.atan(t) / math.pi  # dof = 1
        assert student_t_two_sided_p(t, 1) == pytest.approx(cauchy, abs=1e-12)
        two = 1.0 - t / math.sqrt(2.0 + t * t)  # dof = 2
        assert student_t_two_sided_p(t, 2) == pytest.approx(two, abs=1e-12)
        assert student_t_two_sided_p(-t, 2) == pytest.approx(two, abs=1e-12)
    # textbook critical values: t_{0.975, 2} = 4.303, t_{0.975, 10} = 2.228
    assert student_t_two_sided_p(4.302653, 2) == pytest.approx(0.05, abs=1e-6)
    assert student_t_two_sided_p(2.228139, 10) == pytest.approx(0.05, abs=1e-6)
    assert student_t_two_sided_p(math.inf, 3) == 0.0


def test_metric_direction() -> None:
    assert metric_direction("val/auroc") == "max"
    assert metric_direction("val/auroc/purchase") == "max"
    assert metric_direction("test/logloss") == "min"
    assert metric_direction("val/nll") == "min"
    with pytest.raises(ValueError, match="--mode"):
        metric_direction("val/whatever")


def test_leaderboard_pools_seeds_and_ranks_configurations(tmp_path: Path) -> None:
    report = analyse_sweep(_grid(tmp_path))
    assert report.metric == "val/auroc" and report.mode == "max"
    assert report.swept == ["model", "model.hidden"]
    assert report.constant == {"sweep": "grid"}
    board = report.leaderboard
    assert board.height == 4
    assert board["rank"].to_list() == [1, 2, 3, 4]
    assert board.select("model", "model.hidden").rows() == [
        ("lstm", "64"),
        ("transformer", "64"),
        ("transformer", "32"),
        ("lstm", "32"),
    ]
    best = board.row(0, named=True)
    expected = [0.880, 0.882, 0.879]
    mean = sum(expected) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in expected) / 2)
    assert best["val/auroc_mean"] == pytest.approx(mean)
    assert best["val/auroc_std"] == pytest.approx(std)
    assert best["n_runs"] == 3 and best["seeds"] == "1,2,3"
    assert report.winner == {"model": "lstm", "model.hidden": "64"}


def test_paired_comparison_verdicts(tmp_path: Path) -> None:
    report = analyse_sweep(_grid(tmp_path))
    c = report.comparison
    assert c is not None
    assert c.shared_seeds == ("1", "2", "3")
    assert c.differences == pytest.approx((0.010, 0.011, 0.009))
    assert c.wins == 3 and c.holds
    # t = 0.01 / (0.001 / sqrt(3)) = 17.32 with 2 dof
    assert c.p_value == pytest.approx(1 - 17.3205 / math.sqrt(2 + 17.3205**2), rel=1e-3)
    lstm32 = {"model": "lstm", "model.hidden": "32"}
    tr32 = {"model": "transformer", "model.hidden": "32"}
    worse = paired_comparison(report.runs, lstm32, tr32, "val/auroc", "max")
    assert worse.wins == 0 and not worse.holds and "does not hold" in worse.verdict
    assert "on average the runner-up is ahead" in worse.verdict


def test_noisy_lead_is_not_called_significant(tmp_path: Path) -> None:
    scores = dict(SCORES)
    scores[("transformer", "64", "1")] = 0.8795  # the runner-up nearly ties on seed 1
    report = analyse_sweep(_grid(tmp_path, scores))
    c = report.comparison
    assert c is not None and c.wins == 3 and not c.holds
    assert "not significant" in c.verdict


def test_minimised_metric_ranks_lowest_first(tmp_path: Path) -> None:
    for i, (model, value) in enumerate([("a", 0.5), ("b", 0.3), ("c", 0.4)]):
        _write_run(tmp_path, f"{i}", [f"model={model}"], {"val/nll": value}, optimized="val/nll")
    report = analyse_sweep(tmp_path)
    assert report.mode == "min"
    assert report.leaderboard["model"].to_list() == ["b", "c", "a"]
    assert report.comparison is not None and "only one shared seed" in report.comparison.verdict


def test_missing_and_nan_runs_are_reported_not_dropped(tmp_path: Path) -> None:
    _write_run(tmp_path, "0", ["model=a"], {"val/auroc": 0.7})
    _write_run(tmp_path, "1", ["model=b"], {"val/auroc": math.nan})
    _write_run(tmp_path, "2", ["model=c"], None)  # crashed before writing metrics
    (tmp_path / "3" / ".hydra").mkdir(parents=True)
    (tmp_path / "3" / ".hydra" / "overrides.yaml").write_text("- model=d\n")
    (tmp_path / "3" / "metrics.json").write_text("{not json")
    report = analyse_sweep(tmp_path)
    assert report.missing == ["2"]
    assert len(report.unreadable) == 1 and report.unreadable[0].startswith("3: ")
    assert report.leaderboard["model"].to_list() == ["a", "b"]  # NaN ranks last
    text = sweep_report.render_markdown(report)
    assert "2 without usable metrics" in text
    assert "Missing metrics (failed or still running): 2" in text
    assert "Unreadable, left out: 3: " in text
    assert "n/a" in text and "1 (1 NaN)" in text
    summary = json.loads(write_report(report, tensorboard=False)["summary"].read_text())
    assert summary["best_std"] is None  # NaN is written as null: valid JSON


def test_runs_disagreeing_on_the_metric_need_an_explicit_choice(tmp_path: Path) -> None:
    _write_run(tmp_path, "0", ["task=a"], {"val/auroc": 0.7, "val/nll": 1.0})
    _write_run(tmp_path, "1", ["task=b"], {"val/nll": 0.9}, optimized="val/nll")
    with pytest.raises(ValueError, match="different metrics"):
        analyse_sweep(tmp_path)
    with pytest.raises(ValueError, match="do not report 'val/auroc'"):
        analyse_sweep(tmp_path, metric="val/auroc")
    assert analyse_sweep(tmp_path, metric="val/nll").winner == {"task": "b"}


def test_empty_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_files_agree_with_the_runs(tmp_path: Path) -> None:
    sweep = _grid(tmp_path / "sweep")
    report = analyse_sweep(sweep)
    files = write_report(report)
    board = pl.read_csv(files["csv"], schema_overrides={"model.hidden": pl.String})
    assert board.row(0, named=True)["val/auroc_mean"] == pytest.approx(
        report.leaderboard.row(0, named=True)["val/auroc_mean"]
    )
    runs = pl.read_csv(files["runs_csv"])
    assert runs.height == 12
    assert runs["val/auroc"].sort().to_list() == pytest.approx(sorted(SCORES.values()))
    text = files["markdown"].read_text()
    assert "**Best configuration:** model=lstm, model.hidden=64" in text
    assert "holds: better on 3/3 shared seeds" in text
    assert "engage-train -m model=lstm,transformer model.hidden=32,64 seed=1,2,3" in text
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(files["tensorboard"].glob("events.out.tfevents.*"))
    summary = json.loads(files["summary"].read_text())
    assert summary["best"] == {"model": "lstm", "model.hidden": "64"} and summary["lead_holds"]
    assert not list(sweep.glob(".*.tmp"))  # atomic writes leave no temp files


def test_many_numeric_values_are_plotted_as_a_scatter(tmp_path: Path) -> None:
    for i in range(15):  # an Optuna-like sweep: every trial has its own learning rate
        lr = 1e-4 * 1.5**i
        _write_run(tmp_path, f"{i}", [f"optim.lr={lr}"], {"val/auroc": 0.8 + 0.001 * i})
    report = analyse_sweep(tmp_path)
    figure = plot_sweep(report)
    assert figure.axes[0].get_xscale() == "log"
    files = write_report(report, tensorboard=False)
    assert files["plot"].is_file() and "tensorboard" not in files


def test_cli_prints_the_winner(tmp_path: Path, capsys) -> None:
    sweep = _grid(tmp_path / "sweep")
    assert main([str(sweep), "--no-tensorboard", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "best of 4 configurations by val/auroc: model=lstm, model.hidden=64" in out
    assert (tmp_path / "out" / "leaderboard.md").is_file()
    assert not (sweep / "leaderboard.md").exists()


def test_nan_seeds_are_left_out_of_means_and_pairs(tmp_path: Path) -> None:
    scores = dict(SCORES)
    scores[("lstm", "64", "2")] = math.nan  # e.g. a degenerate split in one run
    report = analyse_sweep(_grid(tmp_path, scores))
    best = report.leaderboard.row(0, named=True)
    assert report.winner == {"model": "lstm", "model.hidden": "64"}  # NaN does not sink it
    assert best["n_nan"] == 1 and best["val/auroc_mean"] == pytest.approx((0.880 + 0.879) / 2)
    c = report.comparison
    assert c is not None and c.shared_seeds == ("1", "2", "3") and c.n_nan_pairs == 1
    assert len(c.differences) == 2 and "1 shared seed(s) with a NaN score left out" in c.verdict


def test_override_syntax_and_spelling(tmp_path: Path) -> None:
    rows = [
        (["+optim.lr=1e-3", "seed=1", "data.source.path=a=b.parquet"], 0.70),
        (["++optim.lr=0.001", "seed=2", "data.source.path=a=b.parquet"], 0.72),
        (["optim.lr=0.01", "seed=1", "~model.dropout", "data.source.path=a=b.parquet"], 0.60),
        (["optim.lr='0.01'", "seed=2", "~model.dropout", "data.source.path=a=b.parquet"], 0.62),
    ]
    for i, (overrides, score) in enumerate(rows):
        _write_run(tmp_path, str(i), overrides, {"val/auroc": score})
    report = analyse_sweep(tmp_path)
    # 1e-3 and 0.001 are one configuration; quotes are not part of a value
    assert report.leaderboard.select("optim.lr", "n_runs").rows() == [("0.001", 2), ("0.01", 2)]
    assert report.constant == {"data.source.path": "a=b.parquet"}
    assert "model.dropout" in report.swept  # deleted in two runs, unset in the others
    assert {run.overrides["model.dropout"] for run in report.runs} == {"(deleted)", "(unset)"}


def test_keys_named_like_reserved_columns(tmp_path: Path) -> None:
    for i, rank in enumerate(("1", "2")):
        _write_run(tmp_path, str(i), [f"+rank={rank}"], {"val/auroc": 0.5 + i / 10})
    report = analyse_sweep(tmp_path)
    assert report.winner == {"rank": "2"}
    assert report.leaderboard["rank (override)"].to_list() == ["2", "1"]
    assert report.leaderboard["rank"].to_list() == [1, 2]


def test_nested_sweeps_and_hidden_folders_are_not_mixed_in(tmp_path: Path) -> None:
    _grid(tmp_path)
    inner = tmp_path / "old_sweep"
    _write_run(inner, "0", ["model=other", "model.hidden=8", "seed=1"], {"val/auroc": 0.99})
    (inner / "multirun.yaml").write_text("hydra: {}\n")
    _write_run(tmp_path / ".submitit", "x", ["model=hidden"], {"val/auroc": 0.99})
    report = analyse_sweep(tmp_path)
    assert len(report.runs) == 12 and report.winner["model"] == "lstm"


def test_out_folder_gets_everything_and_rebuilds_replace(tmp_path: Path) -> None:
    sweep = _grid(tmp_path / "sweep")
    out = tmp_path / "out"
    for _ in range(2):
        files = write_report(analyse_sweep(sweep), out)
    assert files["tensorboard"] == out / "tensorboard_report"
    assert len(list(files["tensorboard"].glob("events.out.tfevents.*"))) == 1
    assert not (sweep / "tensorboard_report").exists()
    write_report(analyse_sweep(sweep), out, plot=False, tensorboard=False)
    assert not (out / "leaderboard.png").exists()  # no stale plot next to a new table
    assert "leaderboard.png" not in (out / "leaderboard.md").read_text()


def test_report_files_follow_the_umask(tmp_path: Path) -> None:
    files = write_report(analyse_sweep(_grid(tmp_path)), tensorboard=False)
    mask = os.umask(0o022)
    os.umask(mask)
    assert files["markdown"].stat().st_mode & 0o777 == 0o666 & ~mask


def test_rebuild_command_repeats_non_default_choices(tmp_path: Path) -> None:
    report = analyse_sweep(_grid(tmp_path / "my sweep"), metric="val/auroc", mode="min", alpha=0.1)
    command = sweep_report.rebuild_command(report)
    assert command.startswith("engage-sweep-report '")
    assert command.endswith("--metric val/auroc --mode min --alpha 0.1")
