"""The run report: its numbers are metrics.json's, its files are complete and id-free, and a
broken report never fails a finished training run."""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from engage_seq.cli import evaluate
from engage_seq.common.config_dir import CONF_DIR
from engage_seq.common.times import parse_instant
from engage_seq.data.tasks import HorizonTask
from engage_seq.evaluation.options import ReportOptions, run_report_options
from engage_seq.evaluation.oracle import oracle_scorer
from engage_seq.evaluation.predictions import recorded_mismatch
from engage_seq.evaluation.references import REFERENCE_CODE, ReferenceCache
from engage_seq.evaluation.results import EvaluatedSplit, Scorer
from engage_seq.experiments.config_checks import _report_options
from engage_seq.experiments.run import train, write_run_report
from engage_seq.metrics.scores import lift_at_top, score_probabilities
from engage_seq.reporting.curves import (
    calibration_bins,
    captured_at_top,
    decile_table,
    gains_curve,
)
from engage_seq.reporting.horizon import TargetReport
from engage_seq.reporting.horizon_summary import horizon_summary
from engage_seq.reporting.report import write_report
from engage_seq.reporting.reproduce import reproduce_commands, reproduce_intro
from engage_seq.reporting.section import json_safe

TINY = ["data=synthetic_tiny", "trainer=smoke", "batch_size=64", "report.n_explain=64"]
HORIZON_METRICS = ("auroc", "auprc", "logloss", "brier", "ece", "lift_top10")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(root: Path, name: str, overrides: list[str]) -> Path:
    """A real tiny run inside ``root/sweep`` (a multirun folder, so runs are siblings)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[*TINY, *overrides, f"cache_dir={root / 'cache'}", "report.enabled=true"],
        )
    run = root / "sweep" / name
    train(cfg, run)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A baseline run first (so the LSTM's report lists it as a sibling), then the LSTM run,
    whose report train() writes itself."""
    root = tmp_path_factory.mktemp("report")
    (root / "sweep").mkdir()
    (root / "sweep" / "multirun.yaml").write_text("{}\n")  # what Hydra leaves in a sweep dir
    return {
        "baseline": _train(root, "rfm", ["model=rfm_logreg"]),
        "lstm": _train(root, "lstm", ["model=lstm"]),
    }


def _model_row(report: dict, target: str = "purchase") -> dict:
    rows = report["targets"][target]["rows"]
    assert rows[0]["kind"] == "model"
    return rows[0]


@pytest.mark.slow
def test_report_numbers_equal_metrics_json(runs: dict[str, Path]) -> None:
    run = runs["lstm"]
    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "report.json").read_text())
    row = _model_row(report)
    for split in ("val", "test"):
        for name in HORIZON_METRICS:
            assert row[f"{split}/{name}"] == pytest.approx(metrics[f"{split}/{name}"], abs=1e-6)
    lstm = report["metrics"]["lstm"]
    assert {k: v for k, v in lstm.items() if k in metrics} == pytest.approx(
        {k: metrics[k] for k in lstm if k in metrics}, abs=1e-6
    )
    summary = report["summary"]
    assert summary["auroc"] == pytest.approx(metrics["test/auroc"], abs=1e-6)
    n = int(metrics["test/n_samples"])
    assert summary["captured_top10"] == pytest.approx(
        metrics["test/lift_top10"] * math.ceil(0.1 * n) / n, abs=1e-9
    )
    # what the reader sees is the same number: the model's row of the Markdown table
    markdown = (run / "report.md").read_text()
    table_row = next(line for line in markdown.splitlines() if "(this run)" in line)
    for name in HORIZON_METRICS:
        digits = 2 if name == "lift_top10" else 4
        assert f"| {metrics[f'test/{name}']:.{digits}f} " in table_row, name
    assert f"ROC-AUC {metrics['test/auroc']:.3f}" in markdown


@pytest.mark.slow
def test_report_compares_baselines_oracle_and_sibling_runs(runs: dict[str, Path]) -> None:
    report = json.loads((runs["lstm"] / "report.json").read_text())
    kinds = {row["label"]: row["kind"] for row in report["targets"]["purchase"]["rows"]}
    assert list(kinds.values()).count("baseline") == 2  # rfm_logreg and gbm (lightgbm in dev)
    assert "oracle" in kinds.values() and "sibling run" in kinds.values()
    # the baseline refitted by the report equals the baseline run of the same data
    baseline_run = json.loads((runs["baseline"] / "metrics.json").read_text())
    refit = report["metrics"]["rfm_logreg"]
    for name in HORIZON_METRICS:
        assert refit[f"test/{name}"] == pytest.approx(baseline_run[f"test/{name}"], abs=1e-9)
    sibling = next(r for r in report["targets"]["purchase"]["rows"] if r["kind"] == "sibling run")
    assert sibling["test/auroc"] == pytest.approx(baseline_run["test/auroc"])
    oracle = report["metrics"]["oracle"]
    assert 0.5 < oracle["test/auroc"] <= 1.0 and "val/auroc" not in oracle
    assert report["skipped"] == {}


@pytest.mark.slow
def test_report_files_are_complete_readable_and_free_of_ids(runs: dict[str, Path]) -> None:
    import matplotlib.image

    run = runs["lstm"]
    markdown = (run / "report.md").read_text()
    report = json.loads((run / "report.json").read_text())
    assert markdown.startswith("# Run report: LSTM, hidden 64")
    assert "## In short" in markdown and "engage-evaluate " in markdown
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    for name in ("ranking", "calibration", "gains", "scores"):
        assert f"figures/{name}_purchase.png" in links
    assert "figures/explain_drivers.png" in links and "figures/fairness.png" in links
    for link in links:  # every figure shown exists, is a PNG and is big enough to read
        data = (run / link).read_bytes()
        assert data.startswith(PNG_MAGIC), link
        height, width = matplotlib.image.imread(run / link).shape[:2]
        assert width >= 600 and height >= 400, link
    assert sorted(report["figures"].values()) == sorted(set(links))
    for table in report["tables"].values():
        assert pl.read_csv(run / table).height > 0
    calibration = pl.read_csv(run / report["tables"]["calibration_purchase"])
    assert calibration["n"].sum() == report["summary"]["n_test"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard" / "report"), size_guidance={"images": 0})
    events.Reload()
    assert {f"report/{name}" for name in report["figures"]} == set(events.Tags()["images"])
    # no user id or pseudonymous key in anything a person reads
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=TINY)
    from hydra.utils import instantiate

    ids = instantiate(cfg.data.source).scan().collect()["user_id"].unique().to_list()
    keys = pl.read_parquet(next((run.parent.parent / "cache").glob("samples-*/*.parquet")))
    secrets = [*ids, *map(str, keys["user_key"].unique().to_list())]
    texts = [markdown, (run / "report.json").read_text()]
    texts += [(run / t).read_text() for t in report["tables"].values()]
    words = {word for text in texts for word in re.findall(r"\w+", text)}
    assert not words & set(secrets)


@pytest.mark.slow
def test_engage_evaluate_rebuilds_without_stale_sections(
    runs: dict[str, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    import engage_seq.evaluation.baseline_scores

    def no_refit(*args, **kwargs):
        raise AssertionError("the baseline fitted for the first report should be reused")

    monkeypatch.setattr(engage_seq.evaluation.baseline_scores, "fit_and_score_baseline", no_refit)
    out = tmp_path / "elsewhere"
    args = [str(runs["lstm"]), "--out", str(out), "--n-explain", "64"]
    assert evaluate.main([*args, "--no-oracle", "--baselines", "rfm_logreg"]) == 0
    assert (out / "figures" / "explain_drivers.png").is_file()
    rebuilt = json.loads((out / "report.json").read_text())
    assert "oracle" not in rebuilt["metrics"] and "oracle" not in rebuilt["skipped"]  # off
    original = json.loads((runs["lstm"] / "report.json").read_text())
    assert rebuilt["metrics"]["lstm"] == original["metrics"]["lstm"]  # deterministic
    assert rebuilt["metrics"]["rfm_logreg"] == original["metrics"]["rfm_logreg"]
    assert f"--out {out}" in (out / "report.md").read_text()
    assert evaluate.main([*args, "--no-oracle", "--no-explain", "--no-baselines"]) == 0
    assert not (out / "figures" / "explain_drivers.png").exists()  # not left from before
    assert not (out / "tables" / "explain_drivers.csv").exists()
    assert (out / "figures" / "ranking_purchase.png").is_file()
    assert "report: " in capsys.readouterr().out
    assert evaluate.main([str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert evaluate.main([str(tmp_path / "empty")]) == 2
    assert "config_resolved.yaml" in capsys.readouterr().err


@pytest.mark.slow
def test_baseline_runs_get_a_report_on_demand(runs: dict[str, Path]) -> None:
    run = runs["baseline"]
    assert not (run / "report.md").exists()  # training skips it, with a log line
    write_report(run, options=ReportOptions(explain=False, oracle=False, segments=()))
    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "report.json").read_text())
    row = _model_row(report)
    assert row["label"] == "RFM logistic regression"
    for name in HORIZON_METRICS:  # the saved baseline.json, not a refit
        assert row[f"test/{name}"] == pytest.approx(metrics[f"test/{name}"], abs=1e-9)
    assert "explanations" not in report["skipped"]  # switched off, not failed
    assert "best other baseline" in (run / "report.md").read_text()


@pytest.mark.slow
def test_next_event_report(tmp_path: Path) -> None:
    run = _train(tmp_path, "next", ["task=next_event", "model=gru", "report.siblings=false"])
    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "report.json").read_text())
    row = report["next_event"]["rows"][0]
    for split in ("val", "test"):
        for name in ("accuracy", "top3_accuracy", "macro_f1", "nll"):
            assert row[f"{split}/{name}"] == pytest.approx(metrics[f"{split}/{name}"], abs=1e-6)
    assert {r["name"] for r in report["next_event"]["rows"]} == {"gru", "markov", "most_frequent"}
    confusion = np.asarray(report["next_event"]["confusion"])
    assert confusion.sum() == metrics["test/n_samples"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(metrics["test/accuracy"])
    assert (run / "figures" / "confusion_next_event.png").read_bytes().startswith(PNG_MAGIC)
    assert "first guess is right" in (run / "report.md").read_text()


def test_calibration_bins_reproduce_the_calibration_error() -> None:
    rng = np.random.default_rng(0)
    probs = rng.beta(0.6, 6.0, size=5000).astype(np.float32)
    probs[:3] = [0.0, 1.0, 1 / 15]  # edges: bin 0, the extra bin for 1.0, a boundary
    labels = (rng.random(5000) < probs * 0.8).astype(np.float64)
    bins = calibration_bins(probs, labels)
    assert bins["n"].sum() == probs.size and bins.filter(pl.col("bin") == 15)["n"].item() == 1
    assert bins.filter(pl.col("bin") == 1)["lower"].item() == pytest.approx(1 / 15)
    used = bins.filter(pl.col("n") > 0)
    weighted_gap = float((used["gap"].abs() * used["n"]).sum()) / probs.size
    ece = score_probabilities(
        ["t"],
        torch.from_numpy(probs.astype(np.float64))[:, None],
        torch.from_numpy(labels)[:, None],
    )["ece"]
    assert weighted_gap == pytest.approx(ece, abs=1e-6)


def test_deciles_gains_and_capture_by_hand() -> None:
    probs = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.5, 0.05])
    labels = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 1], dtype=np.float64)
    deciles = decile_table(probs, labels)  # one user per decile, best score first
    assert deciles["positives"].to_list() == [1, 1, 0, 1, 0, 0, 0, 0, 0, 1]
    assert deciles["lift"][0] == pytest.approx(1 / 0.4)
    assert deciles["cumulative_capture"].to_list()[:4] == pytest.approx([0.25, 0.5, 0.5, 0.75])
    contacted, reached = gains_curve(probs, labels)
    assert (contacted[0], reached[0], contacted[-1], reached[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(reached) >= 0)
    lift = lift_at_top(torch.from_numpy(probs), torch.from_numpy(labels), 0.1)
    assert captured_at_top(lift, probs.size) == pytest.approx(0.25)


def test_report_options_are_checked_before_training() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["+report.explian=false"])
    with pytest.raises(ValueError, match=r"report: unknown report options \['explian'\]"):
        _report_options(cfg)
    options = ReportOptions.from_mapping({"enabled": "false", "segments": None})
    assert options.enabled is False and options.segments == ()


def test_a_failing_report_does_not_fail_the_run(monkeypatch, caplog, tmp_path: Path) -> None:
    import engage_seq.reporting.report

    def broken(*args, **kwargs):
        raise RuntimeError("figure backend exploded")

    monkeypatch.setattr(engage_seq.reporting.report, "write_report", broken)
    with caplog.at_level(logging.ERROR, logger="engage_seq.experiments.run"):
        assert write_run_report(tmp_path, ReportOptions()) is None
    assert f"engage-evaluate {tmp_path}" in caplog.text and "exploded" in caplog.text
    assert write_run_report(tmp_path, ReportOptions(enabled=False)) is None


def test_recomputed_metrics_that_drift_from_metrics_json_are_flagged() -> None:
    computed = {"test/auroc": 0.8402, "test/ece": 0.01, "val/auroc": math.nan}
    assert recorded_mismatch(computed, {"test/auroc": 0.84021, "val/auroc": 0.7}) == []
    (note,) = recorded_mismatch(computed, {"test/auroc": 0.8302, "test/ece": 0.01})
    assert "test/auroc: 0.8402 here, 0.8302 recorded" in note


@pytest.mark.slow
def test_without_matplotlib_the_report_keeps_every_table(
    runs: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    options = ReportOptions(baselines=("rfm_logreg",), oracle=False, explain=False)
    path = write_report(runs["lstm"], options=options, out_dir=tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["figures"] == {} and not list(tmp_path.rglob("*.png"))
    assert any("matplotlib is not installed" in note for note in report["notes"])
    assert "segment fairness" in report["skipped"]  # its figure needs matplotlib too
    assert (
        "(this run)" in path.read_text()
        and (tmp_path / "tables" / "metrics_purchase.csv").is_file()
    )


def test_oracle_is_skipped_where_the_generator_drifted() -> None:
    """Past drift_start the generator's oracle has no ground truth: the report says so."""
    source = {
        "_target_": "engage_seq.synthetic.SyntheticEventSource",
        "n_users": 10,
        "days": 70,
    }
    task = HorizonTask(targets=("purchase",), horizon="7d", name="purchase_7d")
    before = EvaluatedSplit("test", pl.DataFrame(), np.zeros((0, 1)), np.zeros(0, dtype=np.int64),
                            (parse_instant("2026-03-01"),))  # fmt: skip
    drifted = OmegaConf.create({"data": {"source": {**source, "drift_start": "2026-03-05"}}})
    reason = oracle_scorer(drifted, task, before, ReportOptions())
    assert isinstance(reason, str) and "drift_start" in reason


EXPLAIN_SECTION = "What drives P(purchase)"


@pytest.mark.slow
def test_engage_evaluate_starts_from_the_runs_own_report_block(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """The run was trained with report.n_explain=64 (TINY): a rebuild without the flag keeps
    64, a flag overrides only its own setting, and the reproduce line rebuilds exactly it."""
    run = runs["lstm"]
    assert run_report_options(run).n_explain == 64
    out = tmp_path / "rebuilt"
    quick = ["--out", str(out), "--no-oracle", "--no-baselines", "--segments", ""]
    assert evaluate.main([str(run), *quick]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sections"][EXPLAIN_SECTION]["n_explained"] == 64
    assert report["options"]["n_explain"] == 64 and report["options"]["siblings"] is True
    assert report["options"]["baselines"] == [] and report["options"]["oracle"] is False
    assert evaluate.main([str(run), *quick, "--n-explain", "32"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sections"][EXPLAIN_SECTION]["n_explained"] == 32
    command = shlex.split(report["reproduce"][0])
    assert command[:2] == ["engage-evaluate", str(run)]
    # only what differs from the run's own block, in a fixed order
    assert command[2:] == [
        *("--out", str(out), "--no-baselines", "--no-oracle"),
        *("--n-explain", "32", "--segments", ""),
    ]
    assert evaluate.main(command[1:]) == 0  # the printed command rebuilds the same report
    assert json.loads((out / "report.json").read_text())["options"] == report["options"]
    # a report written by training names the bare command: nothing differs
    assert json.loads((run / "report.json").read_text())["reproduce"][0] == (
        f"engage-evaluate {run}"
    )


def test_runs_trained_before_the_report_block_rebuild_with_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "config_resolved.yaml").write_text("seed: 1\n")
    assert run_report_options(tmp_path) == ReportOptions()
    (tmp_path / "config_resolved.yaml").write_text("report:\n  n_explain: 0\n")
    assert evaluate.main([str(tmp_path)]) == 2  # a bad stored block: one line, no traceback


def test_report_option_values_are_checked_not_just_their_names(capsys, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"baselines \['gmb'\] unknown; valid names: \[.*'gbm'"):
        ReportOptions.from_mapping({"baselines": ["gmb"]})
    for key, value, low in [
        ("n_explain", 0, 1),
        ("oracle_replicates", -1, 1),
        ("oracle_max_users", -1, 0),
        ("n_explain", "64", 1),
        ("batch_size", 0, 1),
    ]:
        with pytest.raises(ValueError, match=f"{key} must be an integer >= {low}"):
            ReportOptions.from_mapping({key: value})
    assert ReportOptions.from_mapping({"oracle_max_users": 0}).oracle_max_users == 0
    assert ReportOptions(baselines=["gbm"]).baselines == ("gbm",)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="segments must be a list of names"):
        ReportOptions.from_mapping({"segments": [1]})
    with pytest.raises(ValueError, match=r"segments \['country'\] listed twice"):
        ReportOptions.from_mapping({"segments": ["country", "country"]})
    # a bare string is a comma-separated list, not a list of letters
    assert ReportOptions.from_mapping({"segments": "country, platform"}).segments == (
        "country",
        "platform",
    )
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["report.baselines=[gmb]"])
    with pytest.raises(ValueError, match=r"report: baselines \['gmb'\] unknown"):
        _report_options(cfg)
    # engage-evaluate: a bad flag is one clear line (exit 2), before any work
    (tmp_path / "config_resolved.yaml").write_text("seed: 1\n")
    assert evaluate.main(["--n-explain", "0", str(tmp_path)]) == 2
    assert "n_explain must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("report.n_explain=0", r"report: n_explain must be an integer >= 1"),
        (
            "report.segments=[history_length,plan]",
            r"report.segments: segment column\(s\) \['plan'\] not in synthetic events .*"
            r"available columns: \[.*'event_type'.*\]",
        ),
    ],
    ids=["value", "segment_column"],
)
def test_bad_report_settings_fail_before_any_training_work(
    tmp_path: Path, override: str, message: str
) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = [*TINY, override, f"cache_dir={tmp_path / 'cache'}", "report.enabled=true"]
        cfg = compose("train", overrides=overrides)
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train(cfg, run)
    assert not list(run.iterdir()) and not (tmp_path / "cache").exists()  # nothing done


@pytest.mark.slow
def test_a_segment_column_missing_at_report_time_skips_only_that_column(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """The table changed after training: the fairness section keeps the other segments and
    says which column it left out; with no segment left, the section is skipped with why."""
    quick = {"baselines": (), "oracle": False, "explain": False, "tensorboard": False}
    options = ReportOptions(**quick, segments=("history_length", "plan"))
    markdown = write_report(runs["lstm"], options=options, out_dir=tmp_path).read_text()
    report = json.loads((tmp_path / "report.json").read_text())
    section = report["sections"]["Segment fairness: P(purchase)"]
    assert section["segment_columns"] == ["history_length"]
    assert section["skipped_columns"] == ["plan"]
    (note,) = section["notes"]
    assert "['plan'] not in synthetic events" in note and "available columns" in note
    assert "### history_length" in markdown and f"**Note:** {note}" in markdown
    assert "segment fairness" not in report["skipped"]
    options = ReportOptions(**quick, segments=("plan",))
    write_report(runs["lstm"], options=options, out_dir=tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert "['plan'] not in synthetic events" in report["skipped"]["segment fairness"]
    assert not any(title.startswith("Segment fairness") for title in report["sections"])


def test_reproduce_wording_follows_the_commands_there_are(tmp_path: Path) -> None:
    evaluation = SimpleNamespace(run_dir=tmp_path, config=OmegaConf.create({}))
    commands = reproduce_commands(evaluation, tmp_path, ReportOptions())  # type: ignore[arg-type]
    assert commands == [f"engage-evaluate {tmp_path}"]
    assert "second line" not in reproduce_intro(commands)
    assert "no `.hydra/overrides.yaml`" in reproduce_intro(commands)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- model=lstm\n- seed=2\n")
    commands = reproduce_commands(evaluation, tmp_path, ReportOptions(n_explain=10))  # type: ignore[arg-type]
    assert commands == [
        f"engage-evaluate {tmp_path} --n-explain 10",
        "engage-train model=lstm seed=2",
    ]
    assert "second line" in reproduce_intro(commands)


def _one_class_evaluation(rate: float) -> tuple[SimpleNamespace, TargetReport]:
    """A test period where every label is ``rate`` (0: no buyers): ROC-AUC and lift are NaN,
    as torchmetrics and `lift_at_top` give them on one class."""
    cutoff = parse_instant("2026-03-01")
    labels = np.full((200, 1), rate)
    split = EvaluatedSplit("test", pl.DataFrame({"x": range(200)}), labels,
                           np.full(200, -1), (cutoff,))  # fmt: skip
    nan = math.nan
    metrics = {"test/positive_rate": rate, "test/mean_prediction": 0.04,
               "val/positive_rate": rate}  # fmt: skip
    row = {"label": "LSTM, hidden 64", "kind": "model", "test/auroc": nan, "test/ece": 0.03,
           "test/lift_top10": nan, "test/captured_top10": nan, "test/auprc": nan,
           "val/auroc": nan}  # fmt: skip
    baseline = {**row, "label": "GBM on RFM aggregates", "kind": "baseline"}
    evaluation = SimpleNamespace(
        splits={"test": split, "val": split},
        targets=("purchase",),
        run=Scorer("lstm", row["label"], "model", ("purchase",), metrics=metrics),
        horizon_seconds=7 * 86_400,
        model=object(),
    )
    report = TargetReport("purchase", [row, baseline], pl.DataFrame(), {}, {}, {})
    return evaluation, report


@pytest.mark.parametrize(
    ("rate", "why"),
    [(0.0, "no buyers in the test period"), (1.0, "every user of the test period is one of")],
)
def test_one_class_test_periods_say_why_figures_are_undefined(rate: float, why: str) -> None:
    evaluation, report = _one_class_evaluation(rate)
    lines, summary = horizon_summary(evaluation, report)  # type: ignore[arg-type]
    text = "\n".join(lines)
    assert f"ROC-AUC is undefined: {why}" in text
    assert f"The top 10 % capture is undefined: {why}" in text
    assert "ROC-AUC was undefined: " + why.replace("test", "validation") in text
    assert "—" not in text and "of the time" not in text and "nan" not in text.lower()
    assert "calibration error 0.0300" in text  # defined with one class, still shown
    assert json_safe(summary)["auroc"] is None


def test_reference_cache_key_covers_the_baseline_fit_and_the_oracle_code(
    tmp_path: Path, monkeypatch
) -> None:
    """`fit_and_score_baseline` (evaluation.baseline_scores) and the oracle (synthetic): an edit
    to either must invalidate the cached references, like an edit to baselines.py does."""
    import importlib.util

    assert {
        "engage_seq.evaluation.baseline_scores",
        "engage_seq.synthetic.oracle",
        "engage_seq.synthetic.generator",
        "engage_seq.baselines.features",
        "engage_seq.baselines.logistic",
        "engage_seq.baselines.rfm_logreg",
        "engage_seq.baselines.gbm",
        "engage_seq.baselines.next_event",
    } <= set(REFERENCE_CODE)
    cache = ReferenceCache(SimpleNamespace(cache_dir=tmp_path / "samples-x"))  # type: ignore[arg-type]
    before = cache.path("gbm", {"a": 1})
    find_spec = importlib.util.find_spec
    for module in (
        "engage_seq.evaluation.baseline_scores",
        "engage_seq.synthetic.generator",
        "engage_seq.synthetic.oracle",
    ):
        edited = tmp_path / f"{module}.py"
        edited.write_bytes(Path(find_spec(module).origin).read_bytes() + b"# edited\n")

        def fake(name: str, *args, _module=module, _edited=edited):
            spec = find_spec(name, *args)
            return SimpleNamespace(origin=str(_edited)) if name == _module else spec

        monkeypatch.setattr(importlib.util, "find_spec", fake)
        assert cache.path("gbm", {"a": 1}) != before, module
        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert cache.path("gbm", {"a": 1}) == before


def test_one_json_safe_serves_every_report_section() -> None:
    from engage_seq.reporting import fairness_section, report

    value = {"a": np.float64("nan"), 1: [Path("x/y"), np.int64(3), math.inf, (0.5,)]}
    assert json_safe(value) == {"a": None, "1": ["x/y", 3, None, [0.5]]}
    json.dumps(json_safe(value), allow_nan=False)
    assert fairness_section.json_safe is json_safe and report.json_safe is json_safe
