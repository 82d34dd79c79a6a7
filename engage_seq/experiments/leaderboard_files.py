"""The leaderboard's files: leaderboard.md/.csv, runs.csv, leaderboard.png, summary.json and the
TensorBoard page. matplotlib (extra ``plots``) draws the PNG; without it the tables are still
written and the plot is reported as skipped."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq.common.io import atomic_path, write_json_atomic, write_text_atomic
from engage_seq.experiments.leaderboard_markdown import render_markdown
from engage_seq.experiments.sweep_runs import SweepReport
from engage_seq.reporting.section import json_safe

log = logging.getLogger(__name__)


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
    figure = _write_plot(report, out / "leaderboard.png", files) if plot else None
    if figure is None:
        (out / "leaderboard.png").unlink(missing_ok=True)  # never a stale plot by a new table
    markdown = render_markdown(report, with_plot=figure is not None)
    if tensorboard:
        files["tensorboard"] = _log_to_tensorboard(out, markdown, figure)
    if figure is not None:
        import matplotlib.pyplot as plt

        plt.close(figure)
    write_text_atomic(files["markdown"], markdown)
    files["summary"] = out / "summary.json"
    write_json_atomic(files["summary"], json_safe(_summary(report)))
    return files


def _write_plot(report: SweepReport, png: Path, files: dict[str, Path]) -> Any | None:
    """Draw and save leaderboard.png (recorded in ``files``); None without matplotlib."""
    try:
        from engage_seq.experiments.leaderboard_plot import plot_sweep

        figure = plot_sweep(report)
    except ImportError:
        log.warning(
            "leaderboard.png skipped: matplotlib is not installed (pip install 'engage_seq[plots]')"
        )
        return None
    files["plot"] = png
    with atomic_path(png) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return figure


def _summary(report: SweepReport) -> dict[str, Any]:
    """summary.json: the winner and whether its lead holds, for scripts."""
    c = report.comparison
    best = report.leaderboard.row(0, named=True)
    return {
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
