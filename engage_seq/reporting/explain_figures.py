"""Figures of the explanations section (matplotlib, imported only when a figure is drawn):
the driver heat map and the top users' waterfalls. Each figure is written atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq.reporting.plotting import pyplot, save_png

RECENCY_ORDER = ("<1 d", "1-3 d", "3-7 d", "7-30 d", ">30 d")  # = evaluation.explain.RECENCY_LABELS
EVENTS_PER_WATERFALL = 8  # bars per user; the rest are merged into one "other events" bar


def plot_drivers(drivers: pl.DataFrame, path: Path, target_name: str, min_events: int) -> Path:
    """Event type (rows, strongest up-driver first) × recency (columns, newest first): colour =
    mean contribution per event on a diverging scale centred at 0, text = value and count.
    Cells with fewer than ``min_events`` events are hatched and their value left out: a mean
    of three events is noise, and it would otherwise set the colour scale."""
    plt = pyplot()
    from matplotlib.colors import SymLogNorm

    order = (
        drivers.group_by("event_type")
        .agg((pl.col("total_attribution").sum() / pl.col("count").sum()).alias("mean"))
        .sort("mean", descending=True)["event_type"]
        .to_list()
    )
    cells = {(r["event_type"], str(r["recency"])): r for r in drivers.iter_rows(named=True)}
    values = [
        [
            cells[(e, b)]["mean_attribution"]
            if (e, b) in cells and cells[(e, b)]["count"] >= min_events
            else math.nan
            for b in RECENCY_ORDER
        ]
        for e in order
    ]
    finite = [abs(v) for row in values for v in row if not math.isnan(v)]
    limit = max(finite, default=0.0) or 1e-3
    fig, ax = plt.subplots(figsize=(7.8, 0.55 * len(order) + 1.9), constrained_layout=True)
    # symmetric log colours: the strongest cell (often +0.1) would otherwise leave every
    # negative driver (often -0.01) white; the printed numbers stay exact
    norm = SymLogNorm(linthresh=limit / 30, vmin=-limit, vmax=limit, base=10)
    image = ax.imshow(values, cmap="RdBu_r", norm=norm, aspect="auto")
    ax.set_facecolor("#eeeeee")
    _annotate_cells(ax, order, cells, values, limit)
    ax.set_xticks(range(len(RECENCY_ORDER)), [f"{b} before" for b in RECENCY_ORDER])
    ax.set_yticks(range(len(order)), order)
    ax.tick_params(length=0)
    ax.set_xlabel("when the event happened (before the cutoff)")
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label(f"mean contribution to P({target_name}) per event (symmetric log scale)")
    ax.set_title(
        f"What moves P({target_name}): red pushes up, blue pulls down "
        f"(hatched: < {min_events} events)",
        fontsize=10,
    )
    return save_png(fig, path)


def _annotate_cells(
    ax: Any,
    order: list[str],
    cells: dict[tuple[str, str], dict[str, Any]],
    values: list[list[float]],
    limit: float,
) -> None:
    """Each heat-map cell's text: value and count, or only the count (hatched) where the
    cell is too small to quote (NaN in ``values``), or n=0 where the event never occurs."""
    plt = pyplot()
    for i, event in enumerate(order):
        for j, bucket in enumerate(RECENCY_ORDER):
            cell = cells.get((event, bucket))
            if cell is None:  # no such event at all
                ax.text(j, i, "n=0", ha="center", va="center", fontsize=7, color="#777777")
                continue
            value = values[i][j]
            if math.isnan(value):
                ax.add_patch(
                    plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", ec="#bbbbbb")
                )
                ax.text(j, i, f"n={cell['count']}", ha="center", va="center", fontsize=7,
                        color="#777777")  # fmt: skip
                continue
            dark = abs(value) > 0.25 * limit
            ax.text(
                j, i, f"{_signed(value)}\nn={cell['count']:,}", ha="center", va="center",
                fontsize=7.5, color="white" if dark else "black",
            )  # fmt: skip


def _short_ago(hours: float) -> str:
    if hours >= 48:
        return f"{hours / 24:.1f} d ago"
    return f"{hours:.0f} h ago" if hours >= 1.5 else f"{hours * 60:.0f} min ago"


def _signed(value: float) -> str:
    """'+0.012'; values that round to zero print as '0.000', not '-0.000'."""
    return "0.000" if abs(value) < 5e-4 else f"{value:+.3f}"


def _waterfall_rows(events: pl.DataFrame, keep: int) -> list[tuple[str, float]]:
    """(label, contribution) in time order: the ``keep`` largest |contributions| as their own
    bars, the others merged into one bar placed first (they are mostly the older events)."""
    largest = set(
        events.with_row_index("i").sort(pl.col("attribution").abs(), descending=True)
        .head(keep)["i"].to_list()
    )  # fmt: skip
    rows: list[tuple[str, float]] = []
    other, n_other = 0.0, 0
    for i, r in enumerate(events.iter_rows(named=True)):  # <= max_len events of one user
        if i in largest:
            ago = _short_ago(r["hours_before_cutoff"])
            rows.append((f"{r['event_type']} ({r['channel']}) {ago}", r["attribution"]))
        else:
            other += r["attribution"]
            n_other += 1
    if n_other:
        rows.insert(0, (f"{n_other} other events", other))
    return rows


def plot_top_users(events: pl.DataFrame, path: Path, target_name: str) -> Path:
    """One waterfall per top user: from the baseline score, each event's contribution in time
    order (oldest at the top), to the user's score; green up, red down. Two columns once there
    are more than two users, so five users fit one screen."""
    plt = pyplot()
    ranks = sorted(events["rank"].unique().to_list())
    ncols = 1 if len(ranks) <= 2 else 2
    nrows = math.ceil(len(ranks) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(6.2 * ncols, 3.3 * nrows), squeeze=False, constrained_layout=True
    )
    panels = list(axes.flat)
    for unused in panels[len(ranks) :]:
        unused.set_visible(False)
    for ax, rank in zip(panels, ranks, strict=False):
        _waterfall(ax, events.filter(pl.col("rank") == rank).sort("position"), rank, target_name)
    for ax in panels[: len(ranks)]:
        ax.set_xlabel(f"P({target_name})", fontsize=8)
    fig.suptitle(
        f"Top {len(ranks)} users by P({target_name}): baseline (an equally long history of "
        "average events) + each event's contribution = score",
        fontsize=9.5,
    )
    return save_png(fig, path)


def _waterfall(ax: Any, user: pl.DataFrame, rank: int, target_name: str) -> None:
    first = user.row(0, named=True)
    base, score = first["baseline_score"], first["score"]
    rows = _waterfall_rows(user, EVENTS_PER_WATERFALL)
    labels = ["baseline", *(label for label, _ in rows), "score"]
    level, levels = base, [base, score]
    ax.barh(0, base, color="#9e9e9e", height=0.7)
    ax.text(base, 0, f" {base:.3f}", va="center", fontsize=7)
    for y, (_, value) in enumerate(rows, start=1):
        ax.barh(y, value, left=level, height=0.7, color="#2e7d32" if value >= 0 else "#c62828")
        ax.text(max(level, level + value), y, f" {_signed(value)}", va="center", fontsize=7)
        level += value
        levels.append(level)
    ax.barh(len(rows) + 1, score, color="#1565c0", height=0.7)
    ax.text(score, len(rows) + 1, f" {score:.3f}", va="center", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    # partial sums are not probabilities and may leave [0, 1]; the axis follows them
    low, high = min(0.0, min(levels)), max(levels)
    ax.set_xlim(low, high + 0.2 * (high - low) + 0.02)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(
        f"user #{rank}: P({target_name}) {score:.3f}, {user.height} events", fontsize=8.5,
        loc="left",
    )  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
