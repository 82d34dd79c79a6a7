"""Figures of engage-drift and engage-backtest (matplotlib, extra ``plots``; imported only when
a figure is drawn, so the monitors run without it when asked for tables only)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engage_seq.common.times import parse_instant
from engage_seq.reporting import plotting

if TYPE_CHECKING:
    from engage_seq.monitoring.backtest_result import BacktestResult
    from engage_seq.monitoring.drift_verdicts import DriftReport, FeatureDrift

PLOTTED_METRICS = ("auroc", "auprc", "lift_top10", "ece")  # one panel each, in this order
# keys: the verdicts of engage_seq.monitoring.drift_verdicts.FeatureDrift ("missing on one
# side" = drift_verdicts.ONE_SIDED)
VERDICT_COLOURS = {
    "drift": "#c0392b",
    "missing on one side": "#8e44ad",
    "watch": "#e67e22",
    "ok": "#7f8c8d",
}
TARGET_COLOURS = ("#2c7fb8", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d")
WORST_SHOWN = 4  # small multiples of the reference vs current histograms
MAX_CATEGORIES = 12  # a categorical panel shows the largest this many categories
MAX_DATE_TICKS = 14  # up to this many cutoffs, each gets its own date tick


def save_png(figure: Any, target: Path) -> Path:
    """Monitoring figures are cropped to their drawing (long category labels)."""
    return plotting.save_png(figure, target, dpi=110, tight=True)


def plot_drift(report: DriftReport) -> Any:
    """PSI per feature (bars coloured by verdict, the watch and act thresholds as lines),
    and below it the reference vs current shares of the worst features."""
    plt = plotting.pyplot()
    # bottom to top by PSI; features with values on one side only (no PSI) on top
    features = sorted(
        report.features, key=lambda f: (f.missing_in is not None, 0.0 if f.missing_in else f.psi)
    )
    worst = [f for f in reversed(features) if f.missing_in is None and f.psi > 0][:WORST_SHOWN]
    n_panels = max(len(worst), 1)
    fig = plt.figure(figsize=(3.6 * max(n_panels, 3), 3.2 + 0.32 * len(features) + 3.4))
    grid = fig.add_gridspec(
        2, n_panels, height_ratios=[0.6 + 0.32 * len(features), 3.4], hspace=0.45, wspace=0.3
    )
    ax = fig.add_subplot(grid[0, :])
    names = [f.name for f in features]
    values = [0.0 if math.isnan(f.psi) else f.psi for f in features]
    ax.barh(names, values, color=[VERDICT_COLOURS[f.verdict] for f in features])
    top = max([*values, *(f.threshold for f in features)]) * 1.18
    common = max({f.threshold for f in features}, key=[f.threshold for f in features].count)
    for y, f in enumerate(features):
        text = f"no values in {f.missing_in}" if f.missing_in else f"{f.psi:.3f}"
        colour = VERDICT_COLOURS[f.verdict] if f.missing_in else "black"
        ax.text(values[y] + top * 0.01, y, text, va="center", fontsize=8, color=colour)
        if f.threshold != common:  # a feature's own threshold: a mark on its row
            ax.plot([f.threshold] * 2, [y - 0.4, y + 0.4], color="black", lw=1.5)
    watch = min(f.watch for f in features) if features else 0.1
    ax.axvline(watch, color=VERDICT_COLOURS["watch"], ls="--", lw=1, label=f"watch {watch:g}")
    ax.axvline(
        common, color=VERDICT_COLOURS["drift"], ls="--", lw=1, label=f"drift threshold {common:g}"
    )
    ax.set_xlim(0, top)
    ax.set_xlabel("PSI (population stability index), current vs reference")
    ax.legend(loc="lower right", fontsize=8)
    drifted = [f.name for f in report.drifted]
    ax.set_title(
        "Drift: " + (", ".join(drifted) if drifted else "none above threshold"), fontsize=10
    )
    for i, feature in enumerate(worst):
        _histogram_panel(fig.add_subplot(grid[1, i]), feature, legend=i == 0)
    return fig


def _histogram_panel(ax: Any, feature: FeatureDrift, legend: bool) -> None:
    import numpy as np

    ref = np.asarray(feature.reference, dtype=float)
    cur = np.asarray(feature.current, dtype=float)
    ref, cur = ref / max(ref.sum(), 1.0), cur / max(cur.sum(), 1.0)
    bins = list(feature.bins)
    if feature.kind == "categorical" and len(bins) > MAX_CATEGORIES:
        keep = np.sort(np.argsort(-np.maximum(ref, cur), kind="stable")[:MAX_CATEGORIES])
        bins, ref, cur = [bins[i] for i in keep], ref[keep], cur[keep]
    x = np.arange(len(bins))
    ax.bar(x - 0.2, ref, width=0.4, label="reference", color="#2c7fb8")
    ax.bar(x + 0.2, cur, width=0.4, label="current", color="#f03b20")
    ax.set_xticks(x, bins, rotation=55, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("share", fontsize=8)
    ax.set_title(f"{feature.name}  (PSI {feature.psi:.2f})", fontsize=9)
    ax.set_ylim(0, max(float(ref.max(initial=0)), float(cur.max(initial=0))) * 1.25 or 1.0)
    if legend:
        ax.legend(fontsize=7, loc="upper right", ncols=2)


METRIC_TITLES = {
    "auroc": "ROC-AUC",
    "auprc": "PR-AUC",
    "lift_top10": "lift in the top 10%",
    "ece": "calibration error (ECE)",
}


def plot_backtest(result: BacktestResult) -> Any:
    """Each metric over the cutoffs, one line per target, the training run's test value of
    each as a dashed line in its colour; the next panel compares each target's positive rate
    with its mean prediction (calibration over time), the last the users scored. With several
    targets no macro mean is drawn: it would hide which target moved."""
    plt = plotting.pyplot()
    rows = result.rows
    targets = result.targets
    per_target = {t: result.target_rows(t) for t in targets}
    colours = {t: TARGET_COLOURS[i % len(TARGET_COLOURS)] for i, t in enumerate(targets)}
    when = [_cutoff_time(c) for c in rows["cutoff"].to_list()]
    shown = [m for m in PLOTTED_METRICS if any(m in f.columns for f in per_target.values())]
    fig, grid = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
    axes = list(grid.flat)
    for ax, metric in zip(axes, shown, strict=False):
        _metric_panel(ax, metric, per_target, result, when, colours)
    _calibration_panel(axes[len(shown)], per_target, when, colours)
    users = axes[len(shown) + 1]
    users.bar(when, rows["n_users"].to_list(), width=2.0, color="#7f8c8d")
    users.set_title("users scored per cutoff", fontsize=10)
    for ax in axes[: len(shown) + 2]:
        ax.grid(alpha=0.3)
        if len(when) <= MAX_DATE_TICKS:  # a tick at every cutoff reads best
            ax.set_xticks(when, [w.strftime("%Y-%m-%d") for w in when])
        ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    for unused in axes[len(shown) + 2 :]:
        unused.set_visible(False)
    inputs = result.inputs
    several = len(targets) > 1
    task = inputs["task"] + (f", targets {', '.join(targets)}" if several else "")
    fig.suptitle(
        f"Rolling backtest of {Path(inputs['artifact']).name} ({task}, a cutoff every "
        f"{inputs['every']}): x = cutoff date",
        fontsize=11,
    )
    return fig


def _cutoff_time(cutoff: str) -> datetime:
    """A row's ISO cutoff (UTC, as `engage_seq.common.times.format_instant` writes it) as an
    aware datetime for the x axis."""
    return datetime.fromtimestamp(parse_instant(cutoff), tz=timezone.utc)


def _metric_panel(
    ax: Any,
    metric: str,
    per_target: dict[str, Any],
    result: BacktestResult,
    when: list[datetime],
    colours: dict[str, str],
) -> None:
    """One metric over the cutoffs per target, each target's training test value dashed."""
    several = len(per_target) > 1
    for target, frame in per_target.items():
        colour = colours[target]
        if metric not in frame.columns:
            continue
        values = [math.nan if v is None else v for v in frame[metric].to_list()]
        ax.plot(when, values, marker="o", color=colour, label=target if several else "backtest")
        reference = result.target_reference(target)
        if metric in reference:
            line, label = (colour, None) if several else ("grey", "training test split")
            ax.axhline(reference[metric], color=line, ls="--", lw=1, label=label)
    note = " (dashed: training test split)" if several else ""
    ax.set_title(METRIC_TITLES[metric] + note, fontsize=10)
    ax.legend(fontsize=8)


def _calibration_panel(
    ax: Any, per_target: dict[str, Any], when: list[datetime], colours: dict[str, str]
) -> None:
    """Each target's positive rate (solid) against its mean prediction (dashed)."""
    several = len(per_target) > 1
    for target, frame in per_target.items():
        prefix = f"{target}: " if several else ""
        colour = colours[target]
        rate, predicted = frame["positive_rate"].to_list(), frame["mean_prediction"].to_list()
        ax.plot(when, rate, marker="o", color=colour, label=f"{prefix}positive rate")
        ax.plot(
            when, predicted, marker="s", ls="--", color=colour, label=f"{prefix}mean prediction"
        )
    ax.set_title("positive rate vs mean prediction", fontsize=10)
    ax.legend(fontsize=7 if several else 8)
