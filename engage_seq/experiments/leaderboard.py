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
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from engage_seq.common.io import atomic_path, write_json_atomic, write_text_atomic
from engage_seq.common.stats import student_t_two_sided_p
from engage_seq.common.untrusted_yaml import load_untrusted_config, read_untrusted_yaml
from engage_seq.metrics.direction import metric_direction
from engage_seq.reporting.section import json_safe

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


UNSET = "(unset)"  # a key some runs override and this one does not
DELETED = "(deleted)"  # a ~key override
NO_SEED = "default"  # runs that did not override the seed
RESERVED_COLUMNS = frozenset({"rank", "n_runs", "n_nan", "seeds"})


@dataclass(frozen=True)
class Run:
    """One job of the sweep: where it is, what it overrode, what it measured."""

    name: str  # folder relative to the sweep dir
    overrides: dict[str, str]  # canonical values (see canonical_value)
    metrics: dict[str, float]
    optimized_metric: str | None


@dataclass(frozen=True)
class PairedComparison:
    """Winner minus runner-up on the seeds both ran, signed so that > 0 favours the winner.

    ``shared_seeds`` are all seeds both ran; ``differences`` the finite ones among them (a
    seed where either run scored NaN is left out and counted in ``n_nan_pairs``).
    """

    shared_seeds: tuple[str, ...]
    differences: tuple[float, ...]
    n_nan_pairs: int
    wins: int
    mean_difference: float
    p_value: float
    verdict: str
    holds: bool


@dataclass
class SweepReport:
    """Everything the leaderboard files are rendered from."""

    sweep_dir: Path
    metric: str
    mode: str  # "max" or "min": which direction of ``metric`` is better
    runs: list[Run]
    missing: list[str]  # run folders without metrics.json (failed or still running)
    unreadable: list[str]  # "folder: reason" for runs whose files could not be read
    swept: list[str]  # override keys whose value varies between runs, seed excluded
    constant: dict[str, str]
    leaderboard: pl.DataFrame  # one row per configuration, best first
    comparison: PairedComparison | None
    command: str | None = None
    seed_key: str = SEED_KEY
    alpha: float = 0.05

    @property
    def winner(self) -> dict[str, str]:
        return self.configuration(0)

    def configuration(self, row: int) -> dict[str, str]:
        """Swept key -> value for the leaderboard row ``row`` (0 = best)."""
        values = self.leaderboard.row(row, named=True)
        return {key: values[column_name(key)] for key in self.swept}


def column_name(key: str) -> str:
    """Leaderboard column of a swept key; a key named like a reserved column gets a suffix."""
    return f"{key} (override)" if key in RESERVED_COLUMNS else key


def canonical_value(value: str) -> str:
    """One spelling per value, so ``optim.lr=1e-3`` and ``optim.lr=0.001`` are one
    configuration and quoting (``'a,b'``) is not part of the value."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return str(int(text))
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) else text


def parse_overrides(lines: Iterable[Any]) -> dict[str, str]:
    """Hydra's ``overrides.yaml`` lines -> key -> canonical value (``+key`` and ``++key`` set
    the key; ``~key`` deletes it)."""
    overrides: dict[str, str] = {}
    for line in lines:
        text = str(line)
        key, sep, value = text.partition("=")
        if key.startswith("~"):
            overrides[key[1:]] = DELETED
            continue
        if not sep:
            raise ValueError(f"cannot read override {text!r} (expected key=value)")
        overrides[key.lstrip("+")] = canonical_value(value)
    return overrides


def _run_dirs(sweep_dir: Path) -> list[Path]:
    """Folders with a ``.hydra/overrides.yaml`` under ``sweep_dir``, not descending into a run
    (its subfolders are its own), into hidden folders (.submitit) or into another sweep
    (a folder with its own multirun.yaml) copied inside this one."""
    found = []
    for current, subdirs, _ in os.walk(sweep_dir):
        path = Path(current)
        if path != sweep_dir and (path / "multirun.yaml").is_file():
            subdirs.clear()
        elif (path / ".hydra" / "overrides.yaml").is_file():
            found.append(path)
            subdirs.clear()
        else:
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return sorted(found)


def _read_run(run_dir: Path, name: str) -> Run:
    """Raw YAML reads (no interpolation: values are reported as written), as untrusted input:
    size/alias limits before parsing, and the run's config passes the `_target_` check or the
    run is listed as unreadable."""
    overrides = parse_overrides(read_untrusted_yaml(run_dir / ".hydra" / "overrides.yaml") or [])
    raw = json.loads((run_dir / "metrics.json").read_text())
    if not isinstance(raw, dict):
        raise ValueError("metrics.json is not a JSON object")
    metrics = {str(k): float(v) for k, v in raw.items()}
    optimized = None
    resolved = run_dir / "config_resolved.yaml"
    if resolved.is_file():
        optimized = load_untrusted_config(resolved).get("optimized_metric")
    return Run(name, overrides, metrics, None if optimized is None else str(optimized))


def collect_runs(sweep_dir: Path) -> tuple[list[Run], list[str], list[str]]:
    """(runs, folders without metrics.json, "folder: reason" for unreadable runs)."""
    runs: list[Run] = []
    missing: list[str] = []
    unreadable: list[str] = []
    for run_dir in _run_dirs(sweep_dir):
        name = run_dir.relative_to(sweep_dir).as_posix()
        if not (run_dir / "metrics.json").is_file():
            missing.append(name)
            continue
        try:
            runs.append(_read_run(run_dir, name))
        except (OSError, ValueError, TypeError, yaml.YAMLError) as error:
            unreadable.append(f"{name}: {type(error).__name__}: {error}".replace("\n", " "))
    return runs, missing, unreadable


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
    """Numbers in numeric order (2 before 10), then strings."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of the finite values; NaN where undefined."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return math.nan, math.nan
    std = float(array.std(ddof=1)) if array.size > 1 else math.nan
    return float(array.mean()), std


def build_leaderboard(
    runs: Sequence[Run], swept: Sequence[str], metric: str, mode: str, seed_key: str = SEED_KEY
) -> pl.DataFrame:
    """One row per configuration (the swept keys other than ``seed_key``), best first.

    Columns: ``rank``, the swept keys (see `column_name`), ``n_runs``, ``n_nan`` (runs whose
    ranking metric is NaN, left out of the means), ``seeds``, and ``<metric>_mean`` /
    ``<metric>_std`` for every metric any run reports (std over runs, NaN for one run).
    Configurations without a finite ranking score rank last; ties keep sweep order.
    """
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(run.overrides[key] for key in swept), []).append(run)
    metric_names = sorted({name for run in runs for name in run.metrics})
    rows = []
    for config, members in groups.items():
        row: dict[str, Any] = {column_name(k): v for k, v in zip(swept, config, strict=True)}
        row["n_runs"] = len(members)
        row["n_nan"] = sum(not math.isfinite(run.metrics[metric]) for run in members)
        seeds = {run.overrides[seed_key] for run in members}
        row["seeds"] = ",".join(sorted(seeds, key=natural_sort_key))
        for name in metric_names:
            values = [run.metrics[name] for run in members if name in run.metrics]
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
        rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    ranked = (
        frame.with_columns(pl.col(f"{metric}_mean").fill_nan(None).alias("_score"))
        .sort("_score", descending=mode == "max", nulls_last=True, maintain_order=True)
        .drop("_score")
    )
    return ranked.with_row_index("rank", offset=1)


def paired_comparison(
    runs: Sequence[Run],
    best: dict[str, str],
    runner_up: dict[str, str],
    metric: str,
    mode: str,
    seed_key: str = SEED_KEY,
    alpha: float = 0.05,
) -> PairedComparison:
    """Does the best configuration beat the runner-up seed for seed, beyond seed noise?

    "Holds" needs both: a win on every shared seed and a two-sided paired t-test p <
    ``alpha``. With few seeds that is a high bar on purpose: 3 seeds need a lead about 4.3
    times its own standard error.
    """

    def by_seed(config: dict[str, str]) -> dict[str, float]:
        values: dict[str, list[float]] = {}
        for run in runs:
            if all(run.overrides[k] == v for k, v in config.items()):
                values.setdefault(run.overrides[seed_key], []).append(run.metrics[metric])
        return {seed: float(np.mean(v)) for seed, v in values.items()}

    first, second = by_seed(best), by_seed(runner_up)
    shared = tuple(sorted(set(first) & set(second), key=natural_sort_key))
    sign = 1.0 if mode == "max" else -1.0
    finite = [d for d in (sign * (first[s] - second[s]) for s in shared) if math.isfinite(d)]
    n, n_nan = len(finite), len(shared) - len(finite)
    wins = sum(d > 0 for d in finite)
    mean = float(np.mean(finite)) if finite else math.nan
    nan_note = f"; {n_nan} shared seed(s) with a NaN score left out" if n_nan else ""
    if n < 2:
        verdict = (
            "not tested: the two configurations share no seed with finite scores"
            if n == 0
            else "not tested: only one shared seed (run more seeds to separate it from noise)"
        )
        return PairedComparison(
            shared, tuple(finite), n_nan, wins, mean, math.nan, verdict + nan_note, False
        )
    std = float(np.std(finite, ddof=1))
    if std == 0.0:  # identical differences: a sure difference, unless they are all zero
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
        favours = "" if mean > 0 else ", and on average the runner-up is ahead"
        verdict, holds = (
            f"does not hold: better on only {wins}/{n} shared seeds (paired t-test p = {p:.3g}"
            f"{favours})",
            False,
        )
    return PairedComparison(shared, tuple(finite), n_nan, wins, mean, p, verdict + nan_note, holds)


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


def _fmt(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def describe_config(config: dict[str, str]) -> str:
    """``{"model": "lstm"}`` -> ``model=lstm`` (the override syntax that reproduces it)."""
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "(single configuration)"


def rebuild_command(report: SweepReport) -> str:
    """The engage-sweep-report command that rebuilds this report with the same choices."""
    parts = ["engage-sweep-report", shlex.quote(str(report.sweep_dir)), "--metric", report.metric]
    try:
        default_mode = metric_direction(report.metric)
    except ValueError:
        default_mode = None
    if report.mode != default_mode:
        parts += ["--mode", report.mode]
    if report.seed_key != SEED_KEY:
        parts += ["--seed-key", shlex.quote(report.seed_key)]
    if report.alpha != 0.05:
        parts += ["--alpha", f"{report.alpha:g}"]
    return " ".join(parts)


def render_markdown(report: SweepReport, with_plot: bool = True) -> str:
    """The leaderboard as Markdown: what was swept, ranking, winner and whether its lead holds."""
    metric, board = report.metric, report.leaderboard
    better = "higher" if report.mode == "max" else "lower"
    shown = [metric] + [m for m in DISPLAY_METRICS if m != metric and f"{m}_mean" in board.columns]
    digits = {m: 1 if m.endswith("seconds") else 4 for m in shown}
    seeds = sorted({run.overrides[report.seed_key] for run in report.runs}, key=natural_sort_key)
    lines = [
        f"# Sweep leaderboard: {report.sweep_dir.name}",
        "",
        f"{len(report.runs)} finished runs, {len(report.missing) + len(report.unreadable)} "
        f"without usable metrics, {board.height} configurations, seeds {', '.join(seeds)}. "
        f"Ranked by **{metric}** ({better} is better), mean ± std over each configuration's "
        "runs.",
        "",
    ]
    if report.command:
        lines += [f"Sweep: `{report.command}`", ""]
    header = ["rank", *report.swept, "runs", *shown]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in board.iter_rows(named=True):
        cells = [f"{row['rank']}" + (" (best)" if row["rank"] == 1 else "")]
        cells += [str(row[column_name(key)]) for key in report.swept]
        cells.append(f"{row['n_runs']}" + (f" ({row['n_nan']} NaN)" if row["n_nan"] else ""))
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
    c = report.comparison
    if c is not None:
        lead = "n/a" if math.isnan(c.mean_difference) else f"{c.mean_difference:+.4f}"
        lines.append(
            f"**Lead over the runner-up** ({describe_config(report.configuration(1))}): "
            f"mean paired difference {lead} on seeds {', '.join(c.shared_seeds) or 'none'}: "
            f"{c.verdict}."
        )
    else:
        lines.append("Only one configuration: nothing to compare.")
    lines += ["", "## Runs", ""]
    if report.missing:
        lines.append(f"- Missing metrics (failed or still running): {', '.join(report.missing)}")
    if report.unreadable:
        lines.append(f"- Unreadable, left out: {'; '.join(report.unreadable)}")
    if not report.missing and not report.unreadable:
        lines.append("- Every run folder has a readable metrics.json.")
    if report.constant:
        lines.append(
            "- Same in every run: " + ", ".join(f"`{k}={v}`" for k, v in report.constant.items())
        )
    plot = ", `leaderboard.png` (the ranking metric against each swept parameter)"
    lines.append(
        "- Files: `leaderboard.csv` (one row per configuration, mean and std of every metric), "
        f"`runs.csv` (one row per run){plot if with_plot else ''}, `summary.json`."
    )
    lines.append(f"- Rebuild: `{rebuild_command(report)}`")
    return "\n".join(lines) + "\n"


def runs_frame(report: SweepReport) -> pl.DataFrame:
    """One row per run: folder, every override, every metric."""
    keys = sorted({key for run in report.runs for key in run.overrides})
    names = sorted({name for run in report.runs for name in run.metrics})
    rows = [
        {
            "run": run.name,
            **{f"override.{key}": run.overrides[key] for key in keys},
            **{name: run.metrics.get(name, math.nan) for name in names},
        }
        for run in report.runs
    ]
    return pl.DataFrame(rows, infer_schema_length=None)


def _log_to_tensorboard(out: Path, markdown: str, figure: Any | None) -> Path:
    """The leaderboard text and figure next to the runs' own TensorBoard logs, so
    ``tensorboard --logdir <sweep dir>`` shows runs, hparams and the report together. A
    rebuild replaces the previous event file instead of adding a second copy."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = out / "tensorboard_report"
    for old in logdir.glob("events.out.tfevents.*"):
        old.unlink()
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
    """Write leaderboard.md/.csv, runs.csv, leaderboard.png, summary.json and the TensorBoard
    page into ``out_dir`` (default: the sweep folder), each file atomically."""
    out = Path(out_dir) if out_dir is not None else report.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv"}
    files["runs_csv"] = out / "runs.csv"
    tables = ((files["csv"], report.leaderboard), (files["runs_csv"], runs_frame(report)))
    for path, frame in tables:
        with atomic_path(path) as tmp:
            frame.write_csv(tmp)
    figure = None
    png = out / "leaderboard.png"
    if plot:
        try:
            from engage_seq.experiments.leaderboard_plot import plot_sweep

            figure = plot_sweep(report)
        except ImportError:
            log.warning(
                "leaderboard.png skipped: matplotlib is not installed "
                "(pip install 'engage_seq[plots]')"
            )
        else:
            files["plot"] = png
            with atomic_path(png) as tmp:
                figure.savefig(tmp, format="png", dpi=120)
    if figure is None:
        png.unlink(missing_ok=True)  # never leave a stale plot next to a new table
    markdown = render_markdown(report, with_plot=figure is not None)
    if tensorboard:
        files["tensorboard"] = _log_to_tensorboard(out, markdown, figure)
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
        "n_unreadable": len(report.unreadable),
        "best": report.winner,
        "best_mean": best[f"{report.metric}_mean"],
        "best_std": best[f"{report.metric}_std"],
        "lead_holds": None if c is None else c.holds,
        "lead_verdict": None if c is None else c.verdict,
        "lead_mean_difference": None if c is None else c.mean_difference,
        "lead_p_value": None if c is None else c.p_value,
    }
    files["summary"] = out / "summary.json"
    write_json_atomic(files["summary"], json_safe(summary))
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
