"""Figures of engage-drift and engage-backtest (matplotlib, extra ``plots``; imported only when
a figure is drawn, so the monitors run without it when asked for tables only)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engage_seq.io import atomic_path

if TYPE_CHECKING:
    from engage_seq.backtest import BacktestResult
    from engage_seq.drift import DriftReport, FeatureDrift

VERDICT_COLOURS = {"drift": "#c0392b", "watch": "#e67e22", "ok": "#7f8c8d"}
WORST_SHOWN = 4  # small multiples of the reference vs current histograms
MAX_CATEGORIES = 12  # a categorical panel shows the largest this many categories
MAX_DATE_TICKS = 14  # up to this many cutoffs, each gets its own date tick


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, target: Path) -> None:
    """Write ``figure`` to ``target`` atomically and free it."""
    plt = _pyplot()
    try:
        with atomic_path(target) as tmp:
            figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)


def plot_drift(report: DriftReport) -> Any:
    """PSI per feature (bars coloured by verdict, the watch and act thresholds as lines),
    and below it the reference vs current shares of the worst features."""
    plt = _pyplot()
    features = sorted(report.features, key=lambda f: f.psi)
    worst = [f for f in reversed(features) if f.psi > 0][:WORST_SHOWN]
    n_panels = max(len(worst), 1)
    fig = plt.figure(figsize=(3.6 * max(n_panels, 3), 3.2 + 0.32 * len(features) + 3.4))
    grid = fig.add_gridspec(
        2, n_panels, height_ratios=[0.6 + 0.32 * len(features), 3.4], hspace=0.45, wspace=0.3
    )
    ax = fig.add_subplot(grid[0, :])
    names = [f.name for f in features]
    values = [f.psi for f in features]
    ax.barh(names, values, color=[VERDICT_COLOURS[f.verdict] for f in features])
    top = max([*values, *(f.threshold for f in features)]) * 1.18
    common = max({f.threshold for f in features}, key=[f.threshold for f in features].count)
    for y, f in enumerate(features):
        ax.text(f.psi + top * 0.01, y, f"{f.psi:.3f}", va="center", fontsize=8)
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


def plot_backtest(result: BacktestResult) -> Any:
    """Each metric over the cutoffs, the training run's test value as a dashed line; the last
    panel compares the positive rate with the mean prediction (calibration over time)."""
    plt = _pyplot()
    rows = result.rows
    when = [datetime.fromisoformat(c) for c in rows["cutoff"].to_list()]
    metrics = [m for m in ("auroc", "auprc", "lift_top10", "ece") if m in rows.columns]
    titles = {
        "auroc": "ROC-AUC",
        "auprc": "PR-AUC",
        "lift_top10": "lift in the top 10%",
        "ece": "calibration error (ECE)",
    }
    fig, grid = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
    axes = list(grid.flat)
    for ax, metric in zip(axes, metrics, strict=False):
        values = [math.nan if v is None else v for v in rows[metric].to_list()]
        ax.plot(when, values, marker="o", color="#2c7fb8", label="backtest")
        if metric in result.reference:
            ax.axhline(
                result.reference[metric], color="grey", ls="--", lw=1, label="training test split"
            )
        ax.set_title(titles[metric], fontsize=10)
        ax.legend(fontsize=8)
    calibration = axes[len(metrics)]
    calibration.plot(when, rows["positive_rate"].to_list(), marker="o", label="positive rate")
    calibration.plot(
        when, rows["mean_prediction"].to_list(), marker="s", ls="--", label="mean prediction"
    )
    calibration.set_title("positive rate vs mean prediction", fontsize=10)
    calibration.legend(fontsize=8)
    users = axes[len(metrics) + 1]
    users.bar(when, rows["n_users"].to_list(), width=2.0, color="#7f8c8d")
    users.set_title("users scored per cutoff", fontsize=10)
    for ax in axes[: len(metrics) + 2]:
        ax.grid(alpha=0.3)
        if len(when) <= MAX_DATE_TICKS:  # a tick at every cutoff reads best
            ax.set_xticks(when, [w.strftime("%Y-%m-%d") for w in when])
        ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    for unused in axes[len(metrics) + 2 :]:
        unused.set_visible(False)
    inputs = result.inputs
    fig.suptitle(
        f"Rolling backtest of {Path(inputs['artifact']).name} ({inputs['task']}, a cutoff every "
        f"{inputs['every']}): x = cutoff date",
        fontsize=11,
    )
    return fig
