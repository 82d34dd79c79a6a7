"""engage-sweep-report on hand-made multirun folders with known numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from engage_seq import sweep_report
from engage_seq.sweep_plot import plot_sweep
from engage_seq.sweep_report import (
    analyse_sweep,
    main,
    metric_direction,
    paired_comparison,
    student_t_two_sided_p,
    write_report,
)

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
    runs, swept = report.runs, report.swept
    lstm32 = {"model": "lstm", "model.hidden": "32"}
    tr32 = {"model": "transformer", "model.hidden": "32"}
    worse = paired_comparison(runs, swept, lstm32, tr32, "val/auroc", "max")
    assert worse.wins == 0 and not worse.holds and "does not hold" in worse.verdict


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
    report = analyse_sweep(tmp_path)
    assert report.missing == ["2"]
    assert report.leaderboard["model"].to_list() == ["a", "b"]  # NaN ranks last
    text = sweep_report.render_markdown(report)
    assert "1 without metrics" in text and "Missing metrics (failed or still running): 2" in text
    assert "n/a" in text


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
