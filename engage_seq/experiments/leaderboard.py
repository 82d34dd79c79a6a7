"""Sweep leaderboard: every run of a Hydra multirun in one table, seeds pooled, winner checked.

A sweep answers "which configuration is best?" only if seed noise is separated from real
differences, so runs that differ only in ``seed`` are pooled (mean ± std) and the winner's lead
over the runner-up is tested on the seeds both share (a paired comparison: each seed sees the
same batches and initialisation in both configurations, so pairing removes most of the noise).

This module analyses a sweep folder (`analyse_sweep`): the runs are read by `sweep_runs`, their
numbers computed by `sweep_statistics`; `leaderboard_markdown` and `leaderboard_files` render
and write the result, `engage_seq.cli.sweep_report` is the command line. Needs neither Hydra
nor Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from engage_seq.common.untrusted_yaml import read_untrusted_yaml
from engage_seq.experiments.sweep_runs import (
    NO_SEED,
    SEED_KEY,
    UNSET,
    Run,
    SweepReport,
    collect_runs,
)
from engage_seq.experiments.sweep_statistics import build_leaderboard, paired_comparison
from engage_seq.metrics.direction import metric_direction


def _choose_metric(runs: Sequence[Run], metric: str | None) -> str:
    if metric is None:
        named = {run.optimized_metric for run in runs}
        if None in named or "auto" in named:
            raise ValueError(
                "some runs do not record their resolved optimized_metric (written by engage-train "
                "since the sweep report exists); pass --metric, e.g. --metric val/auroc"
            )
        if len(named) > 1:
            raise ValueError(
                f"the runs optimise different metrics ({', '.join(sorted(map(str, named)))}), so "
                "they cannot share one ranking; pass --metric to pick one"
            )
        metric = str(named.pop())
    lacking = [run.name for run in runs if metric not in run.metrics]
    if lacking:
        raise ValueError(
            f"{len(lacking)} run(s) do not report {metric!r} (e.g. {lacking[0]}); pass --metric "
            "with a metric every run reports"
        )
    return metric


def _sweep_command(sweep_dir: Path) -> str | None:
    """The overrides the sweep was launched with, from Hydra's ``multirun.yaml``."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        task = read_untrusted_yaml(path)["hydra"]["overrides"]["task"]
    except Exception:  # an unreadable file only costs the report its "command" line
        return None
    return "engage-train -m " + " ".join(str(item) for item in task)


def analyse_sweep(
    sweep_dir: str | Path,
    metric: str | None = None,
    mode: str | None = None,
    seed_key: str = SEED_KEY,
    alpha: float = 0.05,
) -> SweepReport:
    """Collect the runs under ``sweep_dir`` and rank their configurations by ``metric``
    (default: the ``optimized_metric`` every run recorded)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
    runs, missing, unreadable = collect_runs(sweep_dir)
    if not runs:
        detail = f"; {len(missing)} run folder(s) have no metrics.json yet" if missing else ""
        detail += f"; unreadable: {'; '.join(unreadable)}" if unreadable else ""
        raise ValueError(
            f"no finished runs under {sweep_dir} (looked for */.hydra/overrides.yaml next to a "
            f"metrics.json){detail}. Point at the folder engage-train -m printed as its sweep "
            "output dir."
        )
    metric = _choose_metric(runs, metric)
    mode = mode or metric_direction(metric)
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    keys = sorted({key for run in runs for key in run.overrides} | {seed_key})
    defaults = {key: UNSET for key in keys} | {seed_key: NO_SEED}
    runs = [replace(run, overrides=defaults | run.overrides) for run in runs]
    values = {key: {run.overrides[key] for run in runs} for key in keys}
    swept = [key for key in keys if key != seed_key and len(values[key]) > 1]
    constant = {
        key: next(iter(values[key])) for key in keys if key != seed_key and len(values[key]) == 1
    }
    leaderboard = build_leaderboard(runs, swept, metric, mode, seed_key)
    report = SweepReport(
        sweep_dir=sweep_dir,
        metric=metric,
        mode=mode,
        runs=runs,
        missing=missing,
        unreadable=unreadable,
        swept=swept,
        constant=constant,
        leaderboard=leaderboard,
        comparison=None,
        command=_sweep_command(sweep_dir),
        seed_key=seed_key,
        alpha=alpha,
    )
    if leaderboard.height >= 2:
        report.comparison = paired_comparison(
            runs, report.configuration(0), report.configuration(1), metric, mode, seed_key, alpha
        )
    return report
