"""The sweep figure: the ranking metric against every swept parameter (matplotlib, extra
``plots``; imported only when a plot is drawn)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from engage_seq.experiments.sweep_runs import SweepReport, natural_sort_key
from engage_seq.experiments.sweep_statistics import mean_std

CATEGORICAL_LIMIT = 12  # more distinct numeric values than this: plotted as a scatter
SERIES_LIMIT = 8  # more combinations of the other parameters than this: pooled in one series


def _is_numeric(values: Iterable[str]) -> bool:
    return all(natural_sort_key(v)[0] == 0 for v in values)


def plot_sweep(report: SweepReport) -> Any:
    """The ranking metric against each swept parameter, one panel per parameter; a star marks
    the best configuration.

    A full grid gets one line per combination of the other parameters (mean ± std over seeds,
    faint dots for single runs), which shows interactions. A search that samples points (Optuna,
    random) has no such lines to draw, so every panel is a scatter of runs against the value.
    """
    from engage_seq.reporting.plotting import pyplot

    plt = pyplot()
    params = report.swept or [report.seed_key]
    ncols = min(3, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig, grid = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False, constrained_layout=True
    )
    axes = list(grid.flat)
    for unused in axes[len(params) :]:
        unused.set_visible(False)
    distinct = {
        param: sorted({run.overrides[param] for run in report.runs}, key=natural_sort_key)
        for param in params
    }
    is_grid = report.leaderboard.height == math.prod(len(distinct[p]) for p in report.swept)
    for ax, param in zip(axes, params, strict=False):
        values = distinct[param]
        if is_grid and not (_is_numeric(values) and len(values) > CATEGORICAL_LIMIT):
            _series_panel(ax, report, param, values)
        else:
            _scatter_panel(ax, report, param, values)
        ax.set_xlabel(param)
        ax.set_ylabel(report.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    better = "higher" if report.mode == "max" else "lower"
    fig.suptitle(
        f"{report.sweep_dir.name}: {report.metric} ({better} is better), "
        "best " + ", ".join(f"{k}={_short(v)}" for k, v in report.winner.items()),
        fontsize=9,
    )
    return fig


def _is_best(report: SweepReport, overrides: dict[str, str]) -> bool:
    return all(overrides.get(k) == v for k, v in report.winner.items())


def _scatter_panel(ax: Any, report: SweepReport, param: str, values: list[str]) -> None:
    if _is_numeric(values):

        def where(value: str) -> float:
            return float(value)

        numbers = [float(v) for v in values]
        if min(numbers) > 0 and max(numbers) / min(numbers) >= 30:  # e.g. learning rates
            ax.set_xscale("log")
        else:
            ax.locator_params(axis="x", nbins=4)  # sampled floats make long tick labels
    else:
        position = {value: i for i, value in enumerate(values)}

        def where(value: str) -> float:
            return float(position[value])

        ax.set_xticks(range(len(values)), [_short(v) for v in values])
    runs = report.runs
    xs = [where(run.overrides[param]) for run in runs]
    ax.scatter(xs, [run.metrics[report.metric] for run in runs], s=18, alpha=0.7, label="runs")
    best = [run for run in runs if _is_best(report, run.overrides)]
    ax.scatter(
        [where(run.overrides[param]) for run in best],
        [run.metrics[report.metric] for run in best],
        marker="*",
        s=160,
        color="crimson",
        label="best",
        zorder=3,
    )


def _series_panel(ax: Any, report: SweepReport, param: str, values: list[str]) -> None:
    others = [key for key in report.swept if key != param]
    combos = sorted({tuple(run.overrides[k] for k in others) for run in report.runs})
    if len(combos) > SERIES_LIMIT:
        combos, others = [()], []
    position = {value: i for i, value in enumerate(values)}
    for i, combo in enumerate(combos):
        color = f"C{i % 10}"
        offset = (i - (len(combos) - 1) / 2) * 0.06  # keeps error bars of series apart
        members = [r for r in report.runs if tuple(r.overrides[k] for k in others) == combo]
        xs, means, stds = [], [], []
        for value in values:
            scores = [r.metrics[report.metric] for r in members if r.overrides[param] == value]
            if not scores:
                continue
            mean, std = mean_std(scores)
            x = position[value] + offset
            xs.append(x)
            means.append(mean)
            stds.append(0.0 if math.isnan(std) else std)
            ax.scatter([x] * len(scores), scores, s=10, alpha=0.35, color=color)
            if _is_best(report, {**dict(zip(others, combo, strict=True)), param: value}):
                ax.scatter([x], [mean], marker="*", s=160, color="crimson", zorder=3)
        label = ", ".join(f"{k}={_short(v)}" for k, v in zip(others, combo, strict=True))
        ax.errorbar(
            xs, means, yerr=stds, marker="o", capsize=3, color=color, label=label or "all runs"
        )
    ax.set_xticks(range(len(values)), [_short(v) for v in values])


def _short(value: str) -> str:
    """Tick and legend text: sampled floats (0.0006284191019272405) shortened to 4 digits."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if len(value) <= 6 else f"{number:.4g}"
