"""The run report's figures (matplotlib, extra ``plots``; imported only when a figure is drawn).

Drawing only: every number plotted is computed by the report's other modules
(`engage_seq.reporting.curves`, `.horizon`, `.next_event`) and also written to ``report.json``.
The reader is a marketing analyst, so every panel has a title that says what it shows, labelled
axes in plain words, the random/perfect references drawn in, and the headline number written on
the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engage_seq.reporting.plotting import pyplot, save_png

DPI = 120
MODEL_COLOR = "#1f5fa8"
ORACLE_COLOR = "#2a9d3c"
BASELINE_COLORS = ("#e07b28", "#8e5bb5", "#9c6b4e", "#d6589f", "#6c757d")
POSITIVE_COLOR = "#d1495b"
NEGATIVE_COLOR = "#7a8793"


@dataclass(frozen=True)
class Curve:
    """One scorer's curve: ``kind`` (model | baseline | oracle | ...) picks its style."""

    label: str
    kind: str
    x: np.ndarray
    y: np.ndarray


def _styles(curves: Sequence[Curve]) -> list[dict[str, Any]]:
    """Model: thick blue on top; oracle: dashed green; baselines: thinner, distinct colours."""
    styles, n_baselines = [], 0
    for curve in curves:
        if curve.kind == "model":
            styles.append({"color": MODEL_COLOR, "lw": 2.4, "zorder": 5})
        elif curve.kind == "oracle":
            styles.append({"color": ORACLE_COLOR, "lw": 1.6, "ls": "--", "zorder": 4})
        else:
            color = BASELINE_COLORS[n_baselines % len(BASELINE_COLORS)]
            styles.append({"color": color, "lw": 1.5, "zorder": 3})
            n_baselines += 1
    return styles


def save_figure(figure: Any, path: Path) -> Path:
    return save_png(figure, path, dpi=DPI)


def plot_ranking(
    roc: Sequence[Curve],
    pr: Sequence[Curve],
    positive_rate: float,
    title: str,
    positives: str = "buyers",
    negatives: str = "non-buyers",
) -> Any:
    """ROC (left) and precision-recall (right), every scorer on both, with the random lines."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
    for curve, style in zip(roc, _styles(roc), strict=True):
        left.plot(curve.x, curve.y, label=curve.label, **style)
    left.plot([0, 1], [0, 1], color="black", ls=":", lw=1, label="random (AUC 0.5)")
    left.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel=f"share of {negatives} flagged (false positive rate)",
        ylabel=f"share of {positives} flagged (true positive rate)",
        title="ROC curve: higher and further left is better",
    )
    for curve, style in zip(pr, _styles(pr), strict=True):
        right.plot(curve.x, curve.y, label=curve.label, **style)
    right.axhline(
        positive_rate, color="black", ls=":", lw=1, label=f"random (base rate {positive_rate:.1%})"
    )
    right.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel=f"recall: share of all {positives} reached",
        ylabel=f"precision: share of flagged users who are {positives}",
        title="Precision-recall: higher is better",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is left else "upper right")
    fig.suptitle(title, fontsize=12)
    return fig


def _draw_before_calibration(ax: Any, before: pl.DataFrame, ece: float | None, lim: float) -> float:
    """The raw scores' reliability curve, dashed grey; -> the x limit that shows it too."""
    raw = before.filter(pl.col("n") > 0)
    ax.plot(
        raw["mean_predicted"].to_numpy(),
        raw["observed_rate"].to_numpy(),
        marker="x",
        color="grey",
        ls="--",
        lw=1.5,
        label=f"before calibration (calibration error {ece or float('nan'):.4f})",
    )
    return min(1.0, max(lim, float(raw["upper"].max()) if raw.height else lim))


def plot_calibration(
    bins: pl.DataFrame,
    ece: float,
    title: str,
    positives: str = "buyers",
    before: pl.DataFrame | None = None,
    before_ece: float | None = None,
) -> Any:
    """Reliability diagram over the ECE's own bins (only bins with samples), with the count
    of each bin written on its point and drawn as bars underneath (log scale); with
    ``before`` (the raw scores' bins of a post-hoc calibrated model) that curve too, dashed."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(7.5, 7),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1.2]},
        constrained_layout=True,
    )
    used = bins.filter(pl.col("n") > 0)
    upper = float(used["upper"].max()) if used.height else 1.0
    lim = min(1.0, max(0.1, upper))
    predicted = used["mean_predicted"].to_numpy()
    observed = used["observed_rate"].to_numpy()
    if before is not None:
        lim = _draw_before_calibration(top, before, before_ece, lim)
    top.plot([0, lim], [0, lim], color="black", ls=":", lw=1, label="perfectly calibrated")
    top.plot(
        predicted,
        observed,
        marker="o",
        color=MODEL_COLOR,
        lw=2,
        label=f"model (calibration error {ece:.4f})",
    )
    for x, y, n in zip(predicted, observed, used["n"].to_list(), strict=True):
        top.annotate(f"n={n:,}", (x, y), textcoords="offset points", xytext=(6, -10), fontsize=7.5)
    high = max(lim, float(observed.max()) * 1.08 if observed.size else lim)
    top.set(
        xlim=(0, lim),
        ylim=(-0.04 * high, high),  # room for the count under the lowest point
        ylabel=f"observed share of {positives}",
        title="Reliability: predicted probability vs what happened",
    )
    top.grid(alpha=0.3)
    top.legend(fontsize=9, loc="upper left")
    _draw_bin_counts(bottom, used)
    fig.suptitle(title, fontsize=12)
    return fig


def _draw_bin_counts(ax: Any, used: pl.DataFrame) -> None:
    """Users per calibration bin as bars, on a log scale."""
    from matplotlib import ticker

    widths = (used["upper"] - used["lower"]).to_numpy()
    ax.bar(
        used["lower"].to_numpy(),
        used["n"].to_numpy(),
        width=widths * 0.92,
        align="edge",
        color=MODEL_COLOR,
        alpha=0.55,
    )
    ax.set_yscale("log")  # counts span orders of magnitude: most users score low
    ax.set_ylim(bottom=0.8)
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set(xlabel="predicted probability (bin)", ylabel="users in bin")
    ax.grid(alpha=0.3, axis="y")


def plot_gains(
    gains: Sequence[Curve],
    lifts: Sequence[Curve],
    captured_top10: float,
    positive_rate: float,
    positives: str,
    title: str,
) -> Any:
    """Cumulative gains (left, every scorer, annotated at the top 10 %) and the lift of each
    score decile (right: the first curve, the model, as bars; the others as markers)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 5.2), constrained_layout=True)
    _draw_gains(left, gains, captured_top10, positive_rate, positives)
    _draw_lift(right, lifts, positives)
    fig.suptitle(title, fontsize=12)
    return fig


def _draw_gains(
    ax: Any, gains: Sequence[Curve], captured_top10: float, positive_rate: float, positives: str
) -> None:
    """Gains curves with the perfect and random references and the top-10 % callout."""
    for curve, style in zip(gains, _styles(gains), strict=True):
        ax.plot(curve.x * 100, curve.y * 100, label=curve.label, **style)
    share = np.linspace(0, 1, 201)
    perfect = np.minimum(share / max(positive_rate, 1e-12), 1.0)
    ax.plot(share * 100, perfect * 100, color="grey", ls="--", lw=1, label="perfect ranking")
    ax.plot([0, 100], [0, 100], color="black", ls=":", lw=1, label="random order")
    ax.axvline(10, color="grey", lw=0.8, alpha=0.6)
    # the text sits in the empty band between the random diagonal and the model's curve
    model_at_25 = float(np.interp(0.25, gains[0].x, gains[0].y)) * 100 if gains else 25.0
    ax.annotate(
        f"top 10% of users\ncapture {captured_top10:.1%} of {positives}",
        xy=(10, captured_top10 * 100),
        xytext=(25, (model_at_25 + 25) / 2),
        va="center",
        arrowprops={"arrowstyle": "->", "color": MODEL_COLOR},
        fontsize=10,
        color=MODEL_COLOR,
        fontweight="bold",
        bbox={"boxstyle": "round", "fc": "white", "ec": MODEL_COLOR, "alpha": 0.9},
        zorder=7,
    )
    ax.plot([10], [captured_top10 * 100], "o", color=MODEL_COLOR, zorder=6)
    ax.set(
        xlim=(0, 100),
        ylim=(0, 101),
        xlabel="users contacted, best scores first (%)",
        ylabel=f"share of all {positives} reached (%)",
        title="Cumulative gains",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def _draw_lift(ax: Any, lifts: Sequence[Curve], positives: str) -> None:
    """The model's lift per decile as labelled bars, the other scorers as markers."""
    model, others = lifts[0], lifts[1:]
    bars = ax.bar(model.x, model.y, color=MODEL_COLOR, alpha=0.8, label=model.label)
    for bar, value in zip(bars, model.y, strict=True):
        ax.annotate(
            f"{value:.1f}×",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=8,
        )
    for curve, style in zip(others, _styles(others), strict=True):
        ax.plot(
            curve.x, curve.y, marker="D", ls="none", ms=5, color=style["color"], label=curve.label
        )
    ax.axhline(1.0, color="black", ls=":", lw=1, label="average (random)")
    ax.set(
        xticks=model.x,
        xlabel="score decile (1 = the 10% of users with the highest scores)",
        ylabel=f"rate of {positives} / average rate",
        title="Lift by decile",
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper right")


def plot_score_distribution(
    probs: np.ndarray, labels: np.ndarray, positives: str, negatives: str, title: str
) -> Any:
    """Histograms of the predicted probability for each outcome, each normalised to its own
    group (the groups differ ~10× in size), with the group means marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.8), constrained_layout=True)
    high = float(np.quantile(probs, 0.999)) if probs.size else 1.0
    edges = np.linspace(0.0, min(1.0, max(high * 1.05, 0.05)), 51)
    for row, (mask, name, color) in enumerate(
        (
            (labels < 0.5, negatives, NEGATIVE_COLOR),
            (labels >= 0.5, positives, POSITIVE_COLOR),
        )
    ):
        values = np.clip(probs[mask], 0, edges[-1])
        weights = np.full(values.size, 100.0 / max(values.size, 1))
        ax.hist(values, bins=edges, weights=weights, color=color, alpha=0.45, label=name)
        ax.hist(values, bins=edges, weights=weights, color=color, histtype="step", lw=1.4)
        mean = float(values.mean()) if values.size else float("nan")
        ax.axvline(mean, color=color, ls="--", lw=1.4)
        ax.annotate(
            f"mean of {name}: {mean:.3f}",
            (mean, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -14 - 14 * row),
            textcoords="offset points",
            color=color,
            fontsize=9,
        )
    ax.set(
        xlabel="predicted probability",
        ylabel="share of the group (%)",
        title=title,
        xlim=(0, edges[-1]),
    )
    ax.grid(alpha=0.3)
    ax.legend(title=f"{probs.size:,} users", fontsize=9)
    return fig


def plot_confusion(counts: np.ndarray, classes: Sequence[str], title: str) -> Any:
    """Row-normalised confusion matrix: each row, a true next event, sums to 100 %."""
    plt = pyplot()
    support = counts.sum(axis=1)
    keep = support > 0  # classes never seen as a label carry no row
    shares = counts[keep] / support[keep, None]
    n_rows, n_cols = shares.shape
    fig, ax = plt.subplots(
        figsize=(1.2 + 0.75 * n_cols, 1.6 + 0.5 * n_rows), constrained_layout=True
    )
    image = ax.imshow(shares * 100, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            value = shares[i, j] * 100
            if value >= 0.5:
                ax.text(
                    j,
                    i,
                    f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if value > 60 else "black",
                )
    row_names = [f"{c} (n={n:,})" for c, n, k in zip(classes, support, keep, strict=True) if k]
    ax.set_yticks(range(n_rows), row_names, fontsize=8)
    ax.set_xticks(range(n_cols), list(classes), rotation=40, ha="right", fontsize=8)
    ax.set(xlabel="predicted next event (most likely)", ylabel="actual next event", title=title)
    fig.colorbar(image, ax=ax, label="% of the row", shrink=0.8)
    return fig
