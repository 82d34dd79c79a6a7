"""The leaderboard as Markdown, and the one-line winner for logs."""

from __future__ import annotations

import math
import shlex

from engage_seq.experiments.sweep_runs import (
    DISPLAY_METRICS,
    SEED_KEY,
    SweepReport,
    column_name,
    natural_sort_key,
)
from engage_seq.metrics.direction import metric_direction


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
    lines += _ranking_table(report, shown)
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
    lines += _runs_section(report, with_plot)
    return "\n".join(lines) + "\n"


def _ranking_table(report: SweepReport, shown: list[str]) -> list[str]:
    """The ranking as a Markdown table, the best row in bold."""
    digits = {m: 1 if m.endswith("seconds") else 4 for m in shown}
    header = ["rank", *report.swept, "runs", *shown]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report.leaderboard.iter_rows(named=True):
        cells = [f"{row['rank']}" + (" (best)" if row["rank"] == 1 else "")]
        cells += [str(row[column_name(key)]) for key in report.swept]
        cells.append(f"{row['n_runs']}" + (f" ({row['n_nan']} NaN)" if row["n_nan"] else ""))
        cells += [_fmt(row[f"{m}_mean"], row[f"{m}_std"], digits[m]) for m in shown]
        if row["rank"] == 1:
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _runs_section(report: SweepReport, with_plot: bool) -> list[str]:
    """The "Runs" section: missing and unreadable runs, what all runs share, files, rebuild."""
    lines = ["", "## Runs", ""]
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
    return lines


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
