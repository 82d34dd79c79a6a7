"""Sweep leaderboard: every run of a Hydra multirun in one table, seeds pooled, winner checked.

A sweep answers "which configuration is best?" only if seed noise is separated from real
differences, so runs that differ only in ``seed`` are pooled (mean ± std) and the winner's lead
over the runner-up is tested on the seeds both share (a paired comparison: each seed sees the
same batches and initialisation in both configurations, so pairing removes most of the noise).

Reads what every run writes (``.hydra/overrides.yaml``, ``metrics.json``,
``config_resolved.yaml``); needs neither Hydra nor Lightning. matplotlib (extra ``plots``) draws
the PNG; without it the tables are still written and the plot is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import OmegaConf

from engage_seq.io import atomic_path, write_json_atomic, write_text_atomic
from engage_seq.metrics import METRIC_MODES
from engage_seq.stats import student_t_two_sided_p

log = logging.getLogger(__name__)

SEED_KEY = "seed"
# Shown in the Markdown table when the runs report them (the CSV has every metric).
DISPLAY_METRICS = (
    "test/auroc",
    "test/auprc",
    "test/ece",
    "test/accuracy",
    "test/macro_f1",
    "test/nll",
    "train/fit_seconds",
)


@dataclass(frozen=True)
class Run:
    """One job of the sweep: where it is, what it overrode, what it measured."""

    name: str  # folder relative to the sweep dir
    overrides: dict[str, str]
    metrics: dict[str, float]
    optimized_metric: str | None


@dataclass(frozen=True)
class PairedComparison:
    """Winner minus runner-up on the seeds both ran, signed so that > 0 favours the winner."""

    shared_seeds: tuple[str, ...]
    differences: tuple[float, ...]
    wins: int
    mean_difference: float
    p_value: float
    verdict: str
    holds: bool


@dataclass
class SweepReport:
    sweep_dir: Path
    metric: str
    mode: str
    runs: list[Run]
    missing: list[str]  # run folders without metrics.json (failed or still running)
    swept: list[str]  # override keys whose value varies between runs, seed excluded
    constant: dict[str, str]
    leaderboard: pl.DataFrame  # one row per configuration, best first
    comparison: PairedComparison | None
    command: str | None = None
    seed_key: str = SEED_KEY
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def winner(self) -> dict[str, str]:
        row = self.leaderboard.row(0, named=True)
        return {key: row[key] for key in self.swept}


def metric_direction(metric: str) -> str:
    """'val/auroc' -> 'max', 'test/logloss' -> 'min', 'train/fit_seconds' -> 'min'."""
    parts = metric.split("/")
    if len(parts) >= 2 and parts[1] in METRIC_MODES:
        return METRIC_MODES[parts[1]]
    if parts[-1].endswith("seconds"):
        return "min"
    raise ValueError(
        f"do not know whether higher or lower {metric!r} is better; pass --mode max or --mode min"
    )


def _parse_overrides(lines: Iterable[Any], where: Path) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for line in lines:
        text = str(line)
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"{where}: cannot read override {text!r} (expected key=value)")
        overrides[key.lstrip("+~")] = value
    return overrides


def collect_runs(sweep_dir: Path) -> tuple[list[Run], list[str]]:
    """Every job folder under ``sweep_dir`` (found by its ``.hydra/overrides.yaml``)."""
    runs: list[Run] = []
    missing: list[str] = []
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        run_dir = overrides_file.parent.parent
        name = run_dir.relative_to(sweep_dir).as_posix()
        metrics_file = run_dir / "metrics.json"
        if not metrics_file.is_file():
            missing.append(name)
            continue
        overrides = _parse_overrides(OmegaConf.load(overrides_file) or [], overrides_file)
        try:
            metrics = {k: float(v) for k, v in json.loads(metrics_file.read_text()).items()}
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"{metrics_file}: not a flat JSON object of numbers ({error})"
            ) from None
        optimized = None
        resolved = run_dir / "config_resolved.yaml"
        if resolved.is_file():
            optimized = OmegaConf.load(resolved).get("optimized_metric")
        runs.append(Run(name, overrides, metrics, None if optimized is None else str(optimized)))
    return runs, missing


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


def natural_sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    std = float(array.std(ddof=1)) if array.size > 1 else math.nan
    return float(array.mean()), std


def build_leaderboard(
    runs: Sequence[Run], swept: Sequence[str], metric: str, mode: str, seed_key: str = SEED_KEY
) -> pl.DataFrame:
    """One row per configuration (the swept keys other than ``seed_key``), best first.

    Columns: the swept keys, ``n_runs``, ``seeds``, and ``<metric>_mean`` / ``<metric>_std`` for
    every metric any run reports (std over runs, NaN for a single run). Configurations whose
    ranking metric is NaN (e.g. ROC-AUC on a one-class split) rank last.
    """
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(run.overrides.get(key, "") for key in swept), []).append(run)
    metric_names = sorted({name for run in runs for name in run.metrics})
    rows = []
    for config, members in groups.items():
        row: dict[str, Any] = dict(zip(swept, config, strict=True))
        row["n_runs"] = len(members)
        seeds = {run.overrides.get(seed_key, "default") for run in members}
        row["seeds"] = ",".join(sorted(seeds, key=natural_sort_key))
        for name in metric_names:
            values = [run.metrics[name] for run in members if name in run.metrics]
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
        rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    score = pl.col(f"{metric}_mean")
    ranked = (
        frame.with_columns(score.fill_nan(None).alias("_score"))
        .sort("_score", descending=mode == "max", nulls_last=True)
        .drop("_score")
    )
    return ranked.with_row_index("rank", offset=1)


def paired_comparison(
    runs: Sequence[Run],
    swept: Sequence[str],
    best: dict[str, str],
    runner_up: dict[str, str],
    metric: str,
    mode: str,
    seed_key: str = SEED_KEY,
    alpha: float = 0.05,
) -> PairedComparison:
    """Does the best configuration beat the runner-up seed for seed, beyond seed noise?

    "Holds" needs both: a win on every shared seed and a paired t-test p < ``alpha``. With
    few seeds the test is conservative on purpose: 3 seeds need a lead about 4.3 times its
    own standard error.
    """

    def by_seed(config: dict[str, str]) -> dict[str, float]:
        values: dict[str, list[float]] = {}
        for run in runs:
            if all(run.overrides.get(k, "") == config[k] for k in swept):
                values.setdefault(run.overrides.get(seed_key, "default"), []).append(
                    run.metrics[metric]
                )
        return {seed: float(np.mean(v)) for seed, v in values.items()}

    first, second = by_seed(best), by_seed(runner_up)
    shared = tuple(sorted(set(first) & set(second), key=natural_sort_key))
    sign = 1.0 if mode == "max" else -1.0
    diffs = tuple(sign * (first[s] - second[s]) for s in shared)
    finite = [d for d in diffs if math.isfinite(d)]
    wins = sum(d > 0 for d in finite)
    mean = float(np.mean(finite)) if finite else math.nan
    if len(finite) < 2:
        verdict = (
            "not tested: the two configurations share no seed with finite scores"
            if not finite
            else "not tested: only one shared seed (run more seeds to separate it from noise)"
        )
        return PairedComparison(shared, diffs, wins, mean, math.nan, verdict, False)
    std = float(np.std(finite, ddof=1))
    n = len(finite)
    if std == 0.0:  # identical differences: a sure lead, unless they are all zero
        p = 0.0 if mean != 0.0 else 1.0
    else:
        p = student_t_two_sided_p(mean / (std / math.sqrt(n)), n - 1)
    if wins == n and p < alpha:
        verdict, holds = f"holds: better on {n}/{n} shared seeds, paired t-test p = {p:.3g}", True
    elif wins == n:
        verdict, holds = (
            f"not significant: better on {n}/{n} shared seeds, but paired t-test p = {p:.3g} "
            f">= {alpha:g} (more seeds would settle it)",
            False,
        )
    else:
        verdict, holds = (
            f"does not hold: better on only {wins}/{n} shared seeds (paired t-test p = {p:.3g})",
            False,
        )
    return PairedComparison(shared, diffs, wins, mean, p, verdict, holds)


def _sweep_command(sweep_dir: Path) -> str | None:
    """The overrides the sweep was launched with, from Hydra's ``multirun.yaml``."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        task = OmegaConf.load(path).hydra.overrides.task
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
    runs, missing = collect_runs(sweep_dir)
    if not runs:
        detail = f"; {len(missing)} run folder(s) have no metrics.json yet" if missing else ""
        raise ValueError(
            f"no finished runs under {sweep_dir} (looked for */.hydra/overrides.yaml next to a "
            f"metrics.json){detail}. Point at the folder engage-train -m printed as its sweep "
            "output dir."
        )
    metric = _choose_metric(runs, metric)
    mode = mode or metric_direction(metric)
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    keys = sorted({key for run in runs for key in run.overrides})
    values = {key: {run.overrides.get(key) for run in runs} for key in keys}
    swept = [key for key in keys if key != seed_key and len(values[key]) > 1]
    constant = {
        key: str(next(iter(values[key])))
        for key in keys
        if key != seed_key and len(values[key]) == 1
    }
    leaderboard = build_leaderboard(runs, swept, metric, mode, seed_key)
    comparison = None
    if leaderboard.height >= 2:
        best, second = (leaderboard.row(i, named=True) for i in (0, 1))
        comparison = paired_comparison(
            runs,
            swept,
            {k: best[k] for k in swept},
            {k: second[k] for k in swept},
            metric,
            mode,
            seed_key,
            alpha,
        )
    return SweepReport(
        sweep_dir=sweep_dir,
        metric=metric,
        mode=mode,
        runs=list(runs),
        missing=missing,
        swept=swept,
        constant=constant,
        leaderboard=leaderboard,
        comparison=comparison,
        command=_sweep_command(sweep_dir),
        seed_key=seed_key,
    )


def _fmt(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def describe_config(config: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "(single configuration)"


def render_markdown(report: SweepReport) -> str:
    """The leaderboard as Markdown: what was swept, ranking, winner and whether its lead holds."""
    metric, board = report.metric, report.leaderboard
    better = "higher" if report.mode == "max" else "lower"
    shown = [metric] + [m for m in DISPLAY_METRICS if m != metric and f"{m}_mean" in board.columns]
    seeds = sorted(
        {run.overrides.get(report.seed_key, "default") for run in report.runs}, key=natural_sort_key
    )
    lines = [
        f"# Sweep leaderboard: {report.sweep_dir.name}",
        "",
        f"{len(report.runs)} finished runs, {len(report.missing)} without metrics, "
        f"{board.height} configurations, seeds {', '.join(seeds)}. Ranked by **{metric}** "
        f"({better} is better), mean ± std over each configuration's runs.",
        "",
    ]
    if report.command:
        lines += [f"Sweep: `{report.command}`", ""]
    header = ["rank", *report.swept, "runs", *shown]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in board.iter_rows(named=True):
        digits = {m: 1 if m.endswith("seconds") else 4 for m in shown}
        cells = [f"{row['rank']}" + (" (best)" if row["rank"] == 1 else "")]
        cells += [str(row[key]) for key in report.swept]
        cells.append(str(row["n_runs"]))
        cells += [_fmt(row[f"{m}_mean"], row[f"{m}_std"], digits[m]) for m in shown]
        if row["rank"] == 1:
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    best = board.row(0, named=True)
    lines += [
        "",
        f"**Best configuration:** {describe_config(report.winner)}: {metric} "
        f"{_fmt(best[f'{metric}_mean'], best[f'{metric}_std'])} over {best['n_runs']} run(s).",
    ]
    if report.comparison is not None:
        second = board.row(1, named=True)
        c = report.comparison
        lead = "n/a" if math.isnan(c.mean_difference) else f"{c.mean_difference:+.4f}"
        runner_up = describe_config({k: second[k] for k in report.swept})
        lines.append(
            f"**Lead over the runner-up** ({runner_up}): "
            f"mean paired difference {lead} on seeds {', '.join(c.shared_seeds) or 'none'}: "
            f"{c.verdict}."
        )
    else:
        lines.append("Only one configuration: nothing to compare.")
    lines += ["", "## Runs", ""]
    lines.append(
        f"- Missing metrics (failed or still running): {', '.join(report.missing)}"
        if report.missing
        else "- Every run folder has its metrics.json."
    )
    if report.constant:
        lines.append(
            "- Same in every run: " + ", ".join(f"`{k}={v}`" for k, v in report.constant.items())
        )
    lines.append(
        "- Files: `leaderboard.csv` (one row per configuration, mean and std of every metric), "
        "`runs.csv` (one row per run), `leaderboard.png` (the ranking metric against each swept "
        "parameter)."
    )
    lines.append(f"- Rebuild: `engage-sweep-report {report.sweep_dir} --metric {report.metric}`")
    return "\n".join(lines) + "\n"


def runs_frame(report: SweepReport) -> pl.DataFrame:
    """One row per run: folder, every override, every metric."""
    keys = sorted({key for run in report.runs for key in run.overrides})
    names = sorted({name for run in report.runs for name in run.metrics})
    rows = [
        {
            "run": run.name,
            **{key: run.overrides.get(key) for key in keys},
            **{name: run.metrics.get(name, math.nan) for name in names},
        }
        for run in report.runs
    ]
    return pl.DataFrame(rows, infer_schema_length=None)


def _log_to_tensorboard(report: SweepReport, markdown: str, figure: Any | None) -> Path:
    """The leaderboard text and figure next to the runs' own TensorBoard logs, so
    ``tensorboard --logdir <sweep dir>`` shows runs, hparams and the report together."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = report.sweep_dir / "tensorboard_report"
    with SummaryWriter(log_dir=str(logdir)) as writer:
        writer.add_text("sweep/leaderboard", markdown)
        if figure is not None:
            writer.add_figure("sweep/leaderboard", figure, close=False)
    return logdir


def write_report(
    report: SweepReport,
    out_dir: str | Path | None = None,
    plot: bool = True,
    tensorboard: bool = True,
) -> dict[str, Path]:
    """Write leaderboard.md/.csv, runs.csv, leaderboard.png and summary.json (atomically)."""
    out = Path(out_dir) if out_dir is not None else report.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(report)
    files = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv"}
    files["runs_csv"] = out / "runs.csv"
    tables = ((files["csv"], report.leaderboard), (files["runs_csv"], runs_frame(report)))
    for path, frame in tables:
        with atomic_path(path) as tmp:
            frame.write_csv(tmp)
    figure = None
    if plot:
        try:
            from engage_seq.sweep_plot import plot_sweep

            figure = plot_sweep(report)
        except ImportError:
            log.warning(
                "leaderboard.png skipped: matplotlib is not installed "
                "(pip install 'engage_seq[plots]')"
            )
        else:
            files["plot"] = out / "leaderboard.png"
            with atomic_path(files["plot"]) as tmp:
                figure.savefig(tmp, format="png", dpi=120)
    if tensorboard:
        files["tensorboard"] = _log_to_tensorboard(report, markdown, figure)
    if figure is not None:
        import matplotlib.pyplot as plt

        plt.close(figure)
    write_text_atomic(files["markdown"], markdown)
    c = report.comparison
    best = report.leaderboard.row(0, named=True)
    summary = {
        "metric": report.metric,
        "mode": report.mode,
        "n_runs": len(report.runs),
        "n_missing": len(report.missing),
        "best": report.winner,
        "best_mean": best[f"{report.metric}_mean"],
        "best_std": best[f"{report.metric}_std"],
        "lead_holds": None if c is None else c.holds,
        "lead_verdict": None if c is None else c.verdict,
        "lead_mean_difference": None if c is None else c.mean_difference,
        "lead_p_value": None if c is None else c.p_value,
    }
    files["summary"] = out / "summary.json"
    write_json_atomic(files["summary"], summary)
    report.files = files
    return files


def winner_line(report: SweepReport) -> str:
    """One line for logs: who won and whether the lead holds."""
    best = report.leaderboard.row(0, named=True)
    score = _fmt(best[f"{report.metric}_mean"], best[f"{report.metric}_std"])
    text = (
        f"best of {report.leaderboard.height} configurations by {report.metric}: "
        f"{describe_config(report.winner)} ({score})"
    )
    if report.comparison is not None:
        text += f"; lead over runner-up {report.comparison.verdict}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="engage-sweep-report",
        description="Leaderboard (Markdown + CSV), seed statistics and a plot for a Hydra "
        "multirun folder of engage-train runs.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder (its runs below it)")
    parser.add_argument(
        "--metric", help="metric to rank by (default: the optimized_metric the runs recorded)"
    )
    parser.add_argument("--mode", choices=("max", "min"), help="override the metric's direction")
    parser.add_argument("--seed-key", default=SEED_KEY, help="override pooled as seeds")
    parser.add_argument("--alpha", type=float, default=0.05, help="paired-test level")
    parser.add_argument("--out", type=Path, help="write here instead of into sweep_dir")
    parser.add_argument("--no-plot", action="store_true", help="skip leaderboard.png")
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="skip the tensorboard_report/ logs"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = analyse_sweep(args.sweep_dir, args.metric, args.mode, args.seed_key, args.alpha)
        files = write_report(
            report, args.out, plot=not args.no_plot, tensorboard=not args.no_tensorboard
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"engage-sweep-report: {error}", file=sys.stderr)
        return 2
    print(render_markdown(report))
    print(winner_line(report))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
