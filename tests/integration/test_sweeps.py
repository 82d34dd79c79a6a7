"""Experiment presets, checked-in sweeps and launchers: composed here, run for real (slow)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from helpers import VENV_BIN
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

from engage_seq.common.config_dir import CONF_DIR
from engage_seq.experiments.config_checks import _resolved_yaml, sweep_direction_problem
from engage_seq.experiments.hparams import _flat_hparams
from engage_seq.experiments.leaderboard import analyse_sweep

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
# presets on the customer-base data (13-week horizon): they run on its tiny variant instead
CUSTOMER_BASE_EXPERIMENTS = [e for e in EXPERIMENTS if e.startswith("customer_base")]
TINY = ["data=synthetic_tiny", "trainer=smoke", "batch_size=64"]


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def _grid_size(params) -> int:
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return len(BasicSweeper.split_arguments(parsed, None)[0])


def test_experiment_presets_are_global_and_say_how_to_run_them() -> None:
    assert {"purchase_7d_lstm", "purchase_7d_transformer", "unsubscribe_30d"} <= set(EXPERIMENTS)
    assert "next_event_transformer" in EXPERIMENTS
    for name in EXPERIMENTS:
        text = (Path(CONF_DIR) / "experiment" / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_"), name
        assert f"engage-train experiment={name}" in text, name


def test_experiment_overrides_groups_and_values() -> None:
    cfg = _compose("experiment=unsubscribe_30d")
    assert cfg.task.name == "unsubscribe_30d" and cfg.model.encoder == "lstm"
    assert cfg.monitor == "val/auprc" and cfg.data.sampling.n_train_cutoffs == 4
    assert cfg.hydra.runtime.choices["task"] == "unsubscribe_30d"
    cfg = _compose("experiment=next_event_transformer", "trainer.max_epochs=1")
    assert cfg.model.encoder == "transformer" and cfg.model.time_to_next
    assert cfg.trainer.max_epochs == 1  # the command line still wins over a preset


def test_the_checked_in_grid_is_two_models_two_sizes_three_seeds() -> None:
    cfg = _compose("sweep=models_sizes_seeds")
    params = cfg.hydra.sweeper.params
    assert set(params) == {"model", "model.hidden", "seed"}
    assert _grid_size(params) == 12
    assert _grid_size(_compose("sweep=seeds").hydra.sweeper.params) == 3


def test_optuna_sweep_composes_and_its_sampler_instantiates() -> None:
    import optuna

    cfg = _compose("sweep=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize" and sweeper.n_trials == 20
    searched = {"optim.lr", "optim.weight_decay", "model.hidden", "model.dropout"}
    assert set(sweeper.params) == searched
    sampler = instantiate(sweeper.sampler)
    assert isinstance(sampler, optuna.samplers.TPESampler)


def test_slurm_launcher_composes_for_clusters() -> None:
    cfg = _compose("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1
    assert launcher.timeout_min == 120 and launcher.array_parallelism == 32
    assert "${hydra.sweep.dir}" in OmegaConf.to_container(launcher)["submitit_folder"]
    local = _compose("hydra/launcher=submitit_local").hydra.launcher
    assert local._target_.endswith("submitit_launcher.LocalLauncher")


def test_optuna_direction_is_checked_in_every_spelling() -> None:
    from hydra_plugins.hydra_optuna_sweeper.config import Direction

    assert sweep_direction_problem("maximize", "val/auroc") is None
    assert sweep_direction_problem(Direction.minimize, "val/nll") is None
    # the plugin's default is the enum Direction.minimize: wrong for ROC-AUC
    problem = sweep_direction_problem(Direction.minimize, "val/auroc")
    assert problem and "set hydra.sweeper.direction=maximize" in problem
    assert sweep_direction_problem(["minimize"], "val/auroc")
    assert sweep_direction_problem(OmegaConf.create(["maximize"]), "val/logloss")
    assert sweep_direction_problem(["maximize", "minimize"], "val/auroc") is None  # multi-objective


def test_resolved_config_names_the_metrics_auto_chose() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["task=next_event"])
    task = instantiate(cfg.task)
    resolved = OmegaConf.create(_resolved_yaml(cfg, task, "val/nll"))
    assert resolved.monitor == "val/nll" and resolved.optimized_metric == "val/nll"
    assert cfg.monitor == "auto"  # the run's own config is not changed


def test_hparams_without_hydra_cover_model_optimiser_and_budget() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["model=transformer", "trainer.max_epochs=3"])
    flat = _flat_hparams(cfg)
    assert flat["model.encoder"] == "transformer" and flat["trainer.max_epochs"] == 3
    assert {"optim.lr", "loss.time_weight", "seed", "data.sampling.max_len"} <= set(flat)
    assert all(isinstance(v, int | float | str | bool) for v in flat.values())


def _engage_train(args: list[str], root: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENGAGE_SEQ_CACHE_DIR": str(root / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [str(VENV_BIN / "engage-train"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory) -> Path:
    """`engage-train -m model=lstm,transformer seed=1,2` on tiny data: 2 x 2 runs."""
    root = tmp_path_factory.mktemp("grid")
    _engage_train(
        ["-m", "model=lstm,transformer", "seed=1,2", *TINY, f"hydra.sweep.dir={root / 'm'}"], root
    )
    return root / "m"


@pytest.mark.slow
def test_grid_sweep_builds_samples_once_and_reports(grid_sweep: Path) -> None:
    runs = sorted(p.parent.parent for p in grid_sweep.glob("*/.hydra/overrides.yaml"))
    assert len(runs) == 4
    logs = [(run / "train.log").read_text() for run in runs]
    assert sum("building samples" in log for log in logs) == 1
    assert sum("reusing cached samples" in log for log in logs) == 3
    for name in ("leaderboard.md", "leaderboard.csv", "runs.csv", "leaderboard.png"):
        assert (grid_sweep / name).is_file(), name
    # the report's numbers are the runs' metrics.json, pooled over seeds
    by_model: dict[str, list[float]] = {}
    for run in runs:
        model = "lstm" if "model=lstm" in run.name else "transformer"
        value = json.loads((run / "metrics.json").read_text())["val/auroc"]
        by_model.setdefault(model, []).append(value)
    report = analyse_sweep(grid_sweep)
    assert report.metric == "val/auroc" and report.swept == ["model"]
    for row in report.leaderboard.iter_rows(named=True):
        values = by_model[row["model"]]
        assert row["val/auroc_mean"] == pytest.approx(sum(values) / 2)
        assert row["n_runs"] == 2 and row["seeds"] == "1,2"
    best = max(by_model, key=lambda m: sum(by_model[m]))
    summary = json.loads((grid_sweep / "summary.json").read_text())
    assert summary["best"] == {"model": best}
    assert f"**Best configuration:** model={best}" in (grid_sweep / "leaderboard.md").read_text()
    assert report.comparison is not None and report.comparison.shared_seeds == ("1", "2")


@pytest.mark.slow
def test_grid_sweep_runs_log_hparams_curves_and_the_report_figure(grid_sweep: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = next(p.parent.parent for p in grid_sweep.glob("*/.hydra/overrides.yaml"))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "val/auroc", "lr-AdamW", "final/val/auroc", "final/test/auroc"} <= scalars
    hparams, metric_tags = set(), set()
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            hparams |= set(data.session_start_info.hparams)
        if data.HasField("experiment"):
            metric_tags |= {m.name.tag for m in data.experiment.metric_infos}
    assert {"choice.model", "seed", "model.hidden", "optim.lr", "trainer.max_epochs"} <= hparams
    assert "final/val/auroc" in metric_tags
    report = EventAccumulator(str(grid_sweep / "tensorboard_report"))
    report.Reload()
    assert "sweep/leaderboard" in report.Tags()["images"]


@pytest.mark.slow
def test_optuna_sweep_of_three_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    args = ["-m", "sweep=optuna", "hydra.sweeper.n_trials=3", *TINY, f"hydra.sweep.dir={sweep}"]
    _engage_train(args, tmp_path)
    runs = sorted(p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml"))
    assert len(runs) == 3
    scores = [json.loads((run / "metrics.json").read_text())["val/auroc"] for run in runs]
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.best_value == pytest.approx(max(scores))  # Optuna saw what the runs returned
    report = analyse_sweep(sweep)
    assert report.leaderboard.height == 3
    assert report.leaderboard.row(0, named=True)["val/auroc_mean"] == pytest.approx(max(scores))
    assert set(report.swept) == {"optim.lr", "optim.weight_decay", "model.hidden", "model.dropout"}
    assert (sweep / "leaderboard.png").is_file()


@pytest.mark.slow
def test_optuna_direction_must_match_the_metric(tmp_path: Path) -> None:
    args = ["-m", "sweep=optuna", "hydra.sweeper.n_trials=1", "optimized_metric=val/logloss"]
    result = _engage_train([*args, *TINY, f"hydra.sweep.dir={tmp_path / 's'}"], tmp_path, False)
    assert result.returncode != 0
    assert "set hydra.sweeper.direction=minimize" in result.stderr
    assert not list((tmp_path / "s").glob("*/metrics.json"))  # refused before training


@pytest.mark.slow
def test_submitit_local_runs_jobs_in_their_own_processes(tmp_path: Path) -> None:
    sweep = tmp_path / "submitit"
    args = ["-m", "hydra/launcher=submitit_local", "seed=1,2", "threads=1", *TINY]
    _engage_train([*args, f"hydra.sweep.dir={sweep}"], tmp_path)
    # submitit names each local job after the process it started, and keeps its logs there
    # (the literal "%j" folder holds the pickled submissions before jobs have ids)
    jobs = {p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit()}
    assert len(jobs) == 2 and str(os.getpid()) not in jobs
    for job in jobs:
        assert list((sweep / ".submitit" / job).glob("*_result.pkl")), job
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    assert (sweep / "leaderboard.md").is_file()


@pytest.mark.slow
def test_every_experiment_preset_runs_one_tiny_step(tmp_path: Path) -> None:
    # 130 days so the 30-day unsubscribe preset fits train, validation and test windows
    tiny = [*TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    tiny += ["data.source.days=130", "data.sampling.n_train_cutoffs=2"]
    sweep = tmp_path / "presets"
    behavioural = [e for e in EXPERIMENTS if e not in CUSTOMER_BASE_EXPERIMENTS]
    args = ["-m", f"experiment={','.join(behavioural)}", *tiny, f"hydra.sweep.dir={sweep}"]
    _engage_train(args, tmp_path)
    customer_base = ["data=customer_base_tiny", "trainer=smoke", "trainer.max_epochs=1"]
    args = ["-m", f"experiment={','.join(CUSTOMER_BASE_EXPERIMENTS)}", *customer_base]
    _engage_train([*args, f"hydra.sweep.dir={tmp_path / 'customer_base'}"], tmp_path)
    ran = {}
    for root in (sweep, tmp_path / "customer_base"):
        for overrides in root.glob("*/.hydra/overrides.yaml"):
            (name,) = [
                o.split("=")[1] for o in OmegaConf.load(overrides) if o.startswith("experiment")
            ]
            ran[name] = overrides.parent.parent
    assert sorted(ran) == EXPERIMENTS
    for name, run in ran.items():
        metrics = json.loads((run / "metrics.json").read_text())
        resolved = OmegaConf.load(run / "config_resolved.yaml")
        assert math.isfinite(metrics[resolved.optimized_metric]), name
