"""The segment fairness section of a run report: `fairness_report_section` assesses the
segments (`engage_seq.evaluation.fairness.assess_segments`, the math) and lays the result out
as a table per segment column, the flagged values in words, and one figure
(`write_fairness_figure`; matplotlib imported only when it is drawn)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq.evaluation.fairness import SegmentAssessment, assess_segments
from engage_seq.reporting.plotting import pyplot, save_png
from engage_seq.reporting.section import ReportSection, json_safe

FIGURE_NAME = "fairness.png"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _cell(text: str) -> str:
    """A value as a Markdown table cell: pipes escaped, one line."""
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: pl.DataFrame) -> str:
    lines = [
        "| value | n | positive rate | mean score | ROC-AUC | ECE | flag |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows.iter_rows(named=True):
        auroc = _number(row["auroc"])
        if math.isnan(row["auroc"]):
            auroc = "n/a (one class)"
        flag = {"flagged": "**flagged**", "too small to judge": "too small"}.get(row["status"], "")
        lines.append(
            f"| {_cell(row['value'])} | {row['n']:,} | {_number(row['positive_rate'])} | "
            f"{_number(row['mean_score'])} | {auroc} | {_number(row['ece'])} | {flag} |"
        )
    return "\n".join(lines)


def fairness_report_section(
    scores: pl.DataFrame,
    segment_columns: Sequence[str],
    overall: Mapping[str, float],
    out_dir: Path,
    *,
    report_dir: Path | None = None,
    title: str = "Segment fairness",
    notes: Sequence[str] = (),
    **thresholds: Any,
) -> ReportSection:
    """The report section: a table per segment column, the flagged values in words, a figure.

    ``scores`` as for `segment_metrics` (whose keyword arguments ``thresholds`` are).
    ``overall``: the split's headline metrics under their plain names (``auroc``,
    ``positive_rate``, ``mean_prediction``, as `engage_seq.metrics.scores` names them); gaps are
    measured against the scores' own overall, and a headline that differs from it by more
    than 0.01 is reported as a warning (it is usually another split's). The figure is written
    to ``out_dir/fairness.png`` and linked relative to ``report_dir`` (default ``out_dir``).
    ``notes``: caveats shown first and kept in the summary (e.g. a segment column skipped).
    """
    found = assess_segments(scores, segment_columns, overall, **thresholds)
    out_dir = Path(out_dir)
    figure = out_dir / FIGURE_NAME
    write_fairness_figure(found.metrics, found.settings["max_auroc_gap"], figure)
    link = (
        Path(os.path.relpath(figure, report_dir)) if report_dir is not None else Path(FIGURE_NAME)
    )
    text = _markdown(found, segment_columns, notes, link)
    return ReportSection(
        title=title,
        markdown="\n".join(text).rstrip() + "\n",
        figures={"fairness": figure},
        tables={"fairness": found.metrics},
        summary=json_safe(_summary(found, segment_columns, notes)),
    )


def _introduction(found: SegmentAssessment) -> str:
    """What is compared, and when a value is flagged, with the thresholds in force."""
    reference, settings = found.reference, found.settings
    return (
        f"Every value of each segment column against the whole split (n = {reference['n']:,}: "
        f"ROC-AUC {_number(reference['auroc'])}, positive rate "
        f"{_number(reference['positive_rate'])}, mean score {_number(reference['mean_score'])}, "
        f"ECE {_number(reference['ece'])}). A value with at least {settings['min_size']} samples "
        f"is flagged when its ROC-AUC is more than {settings['max_auroc_gap']:g} below the "
        "overall, or its calibration gap (mean score − positive rate) differs from the "
        f"overall's ({reference['calibration_gap']:+.3f}) by more than "
        f"{found.calibration_threshold:.3f}, and in either case by more than "
        f"{settings['min_z']:g} standard errors. Smaller values are listed but not judged. The "
        "overall ROC-AUC also ranks users *across* segments, so it can exceed every segment's "
        "when positive rates differ between them."
    )


def _markdown(
    found: SegmentAssessment, segment_columns: Sequence[str], notes: Sequence[str], link: Path
) -> list[str]:
    """The section's lines: introduction, notes, headline warning, flags, figure, tables."""
    segments, flagged = found.segments, found.flagged
    text = [_introduction(found), ""]
    text += [line for note in notes for line in (f"**Note:** {note}", "")]
    if found.headline_mismatch:
        text += [
            "**Warning:** the headline metrics do not match these scores ("
            + "; ".join(found.headline_mismatch)
            + "): they may come from another split.",
            "",
        ]
    text.append(
        f"**Flagged: {flagged.height} of {segments.height} segment values** "
        f"({found.too_small} too small to judge)."
    )
    text.append("")
    text += [
        f"- {row['segment']} = {_cell(row['value'])}: {row['reason']}"
        for row in flagged.iter_rows(named=True)
    ] or ["No segment value is flagged."]
    text += ["", f"![ROC-AUC and calibration per segment value]({link.as_posix()})", ""]
    for column in segment_columns:
        text += [f"### {column}", "", _table(segments.filter(pl.col("segment") == column)), ""]
    return text


def _summary(
    found: SegmentAssessment, segment_columns: Sequence[str], notes: Sequence[str]
) -> dict[str, Any]:
    """The section's headline numbers for ``report.json`` (made JSON-safe by the caller)."""
    segments, reference, settings = found.segments, found.reference, found.settings
    return {
        "segment_columns": list(segment_columns),
        "segment_values": segments.height,
        "judged": segments.height - found.too_small,
        "too_small": found.too_small,
        "flagged": found.flagged.height,
        "flagged_segments": found.flagged.select(
            "segment", "value", "n", "auroc", "calibration_gap", "reason"
        ).to_dicts(),
        "overall": {
            k: reference[k]
            for k in ("n", "positive_rate", "mean_score", "auroc", "ece", "calibration_gap")
        },
        "thresholds": {
            "min_size": settings["min_size"],
            "max_auroc_gap": settings["max_auroc_gap"],
            "max_calibration_gap": found.calibration_threshold,
            "min_z": settings["min_z"],
            "max_values": settings["max_values"],
        },
        "headline_mismatch": found.headline_mismatch,
        "notes": list(notes),
    }


_COLOURS = {"flagged": "crimson", "ok": "C0", "too small to judge": "0.7"}


def write_fairness_figure(metrics: pl.DataFrame, max_auroc_gap: float, path: Path) -> Path:
    """One row per segment column: each value's ROC-AUC as a dot on a stem from the overall
    (left; dots, not bars, because the axis does not start at 0), and its positive rate and
    mean score joined by a line whose length is the calibration gap (right). Colour = status.
    """
    plt = pyplot()

    reference = metrics.row(0, named=True)
    segments = metrics.filter(pl.col("status") != "reference")
    columns = list(dict.fromkeys(segments["segment"].to_list()))
    heights = [0.3 * int((segments["segment"] == c).sum()) + 0.9 for c in columns]
    fig, grid = plt.subplots(
        len(columns),
        2,
        figsize=(11, sum(heights) + 1.2),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
    )
    finite = segments.filter(pl.col("auroc").is_not_nan())["auroc"].to_list()
    low = min([reference["auroc"] - max_auroc_gap, *finite]) - 0.05
    low = max(0.0, min(low, 0.45)) if math.isfinite(low) else 0.0
    for (ax_auc, ax_cal), column in zip(grid, columns, strict=True):
        rows = segments.filter(pl.col("segment") == column)
        _draw_auroc(ax_auc, rows, column, reference, max_auroc_gap, low)
        _draw_calibration(ax_cal, rows, column, reference)
    handles = _legend_handles(reference, max_auroc_gap)
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    fig.suptitle("Segment fairness: ROC-AUC and calibration per segment value", fontsize=10)
    return save_png(fig, path)


def _draw_auroc(
    ax: Any,
    rows: pl.DataFrame,
    column: str,
    reference: dict[str, Any],
    max_auroc_gap: float,
    low: float,
) -> None:
    """Left panel of one segment column: ROC-AUC dots on stems from the overall's line."""
    ys = list(range(rows.height))
    labels = [f"{_short(v)} (n={n:,})" for v, n in zip(rows["value"], rows["n"], strict=True)]
    colours = [_COLOURS[s] for s in rows["status"]]
    aurocs = rows["auroc"].to_list()
    ax.axvspan(low, reference["auroc"] - max_auroc_gap, color="crimson", alpha=0.06)
    ax.axvline(reference["auroc"], color="k", lw=1)
    for y, auroc, colour in zip(ys, aurocs, colours, strict=True):
        if math.isnan(auroc):
            ax.text(low + 0.01, y, "n/a (one class)", va="center", fontsize=7)
            continue
        ax.plot([reference["auroc"], auroc], [y, y], color=colour, lw=2)
        ax.scatter([auroc], [y], color=colour, s=36, zorder=3)
    ax.set_xlim(low, 1.02)  # room for a dot at 1.0
    ax.set_ylim(len(ys) - 0.5, -0.5)  # first value on top, as in the table
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_title(f"{column}: ROC-AUC", fontsize=9, loc="left")
    ax.grid(axis="x", alpha=0.3)


def _draw_calibration(ax: Any, rows: pl.DataFrame, column: str, reference: dict[str, Any]) -> None:
    """Right panel of one segment column: positive rate (circle) to mean score (diamond)."""
    ys = list(range(rows.height))
    colours = [_COLOURS[s] for s in rows["status"]]
    rates, means = rows["positive_rate"].to_list(), rows["mean_score"].to_list()
    ax.axvline(reference["positive_rate"], color="k", lw=1, ls="--")
    ax.hlines(ys, rates, means, colors=colours, lw=2)
    ax.scatter(means, ys, marker="D", c=colours, s=30, zorder=3)
    # hollow and on top: a calibrated value shows its diamond inside the circle
    ax.scatter(rates, ys, marker="o", facecolors="none", edgecolors="k", s=60, zorder=4)
    ax.set_ylim(len(ys) - 0.5, -0.5)
    ax.set_yticks(ys, [""] * len(ys))
    ax.margins(x=0.08)
    ax.set_title(
        f"{column}: positive rate vs mean score (overall gap {reference['calibration_gap']:+.3f})",
        fontsize=9,
        loc="left",
    )
    ax.grid(axis="x", alpha=0.3)


def _legend_handles(reference: dict[str, Any], max_auroc_gap: float) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    overall_rate = f"overall positive rate ({reference['positive_rate']:.3f})"
    below = f"more than {max_auroc_gap:g} below overall"
    return [
        Line2D([], [], color="k", lw=1, label=f"overall ROC-AUC ({reference['auroc']:.3f})"),
        Rectangle((0, 0), 1, 1, color="crimson", alpha=0.15, label=below),
        Line2D([], [], color="k", lw=1, ls="--", label=overall_rate),
        Line2D([], [], marker="o", ls="", mfc="none", mec="k", label="positive rate"),
        Line2D([], [], marker="D", ls="", color="0.3", label="mean score"),
        *[Line2D([], [], marker="o", color=c, lw=2, label=s) for s, c in _COLOURS.items()],
    ]


def _short(value: str, width: int = 24) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"
