"""The "what drives the scores" section of a run report: `explain_report_section` explains the
test split (`engage_seq.evaluation.explain.explain_split`, the math) and turns the result into
markdown, two figures (`engage_seq.reporting.explain_figures`, matplotlib imported only when
they are drawn) and the summary numbers of ``report.json``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engage_seq.data.encoding import EncodedSamples, Vocabulary
from engage_seq.evaluation.attribution import TOLERANCE
from engage_seq.evaluation.explain import SplitExplanation, explain_split
from engage_seq.models.engagement import EngagementModel
from engage_seq.reporting.section import ReportSection

# Events per cell below which the plain-language reading does not quote a driver cell.
MIN_CELL_EVENTS = 20


def _signed(value: float) -> str:
    """'+0.21', '-0.013'; a value that rounds to zero prints as '0.000', not '-0.000'."""
    if abs(value) < 5e-4:
        return "0.000"
    return f"{value:+.3f}" if abs(value) < 0.1 else f"{value:+.2f}"


def _ago(hours: float) -> str:
    """'2.1 days before' / '5 hours before': the unit a reader thinks in."""
    if hours < 48:
        return f"{hours:.0f} hours before" if hours >= 1.5 else f"{hours * 60:.0f} min before"
    return f"{hours / 24:.1f} days before"


def _reading(drivers: pl.DataFrame, min_events: int) -> list[str]:
    """Plain-language lines for the strongest up and down drivers with enough events."""
    quoted = drivers.filter(pl.col("count") >= min_events)
    if quoted.is_empty():
        return ["Too few events per event type and recency to quote a driver."]
    lines = []
    up = quoted.filter(pl.col("mean_attribution") > 0).head(3)
    down = quoted.filter(pl.col("mean_attribution") < 0).sort("mean_attribution").head(2)
    for title, part in (("Push scores up most", up), ("Pull scores down most", down)):
        if part.is_empty():
            continue
        cells = [
            f"**{r['event_type']}** events {_within(r['recency'])} "
            f"({_signed(r['mean_attribution'])} per event on average, "
            f"{r['share_positive']:.0%} positive, n = {r['count']:,})"
            for r in part.iter_rows(named=True)
        ]
        lines.append(f"- {title}: " + "; ".join(cells) + ".")
    return lines


def _within(bucket: str) -> str:
    return {
        "<1 d": "within a day",
        "1-3 d": "1-3 days before",
        "3-7 d": "3-7 days before",
        "7-30 d": "7-30 days before",
        ">30 d": "over 30 days before",
    }[bucket]


def _user_lines(events: pl.DataFrame, rank: int, shown: int) -> str:
    """'user #1 (score 0.83, baseline 0.05): add_to_cart (web) 2.1 days before: +0.21; ...'"""
    first = events.row(0, named=True)
    top = events.sort(pl.col("attribution").abs(), descending=True).head(shown)
    rest = events.height - top.height
    parts = [
        f"{r['event_type']} ({r['channel']}) {_ago(r['hours_before_cutoff'])}: "
        f"{_signed(r['attribution'])}"
        for r in top.iter_rows(named=True)
    ]
    if rest:
        others = events["attribution"].sum() - top["attribution"].sum()
        parts.append(f"{_count(rest, 'other event')} together: {_signed(others)}")
    return (
        f"- user #{rank} (score {first['score']:.2f}, baseline {first['baseline_score']:.2f}, "
        f"{_count(events.height, 'event')}): " + "; ".join(parts)
    )


def _count(n: int, noun: str) -> str:
    """'1 event', '2 events', '1,000 events'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _explained_parts(n_random: int, n_extra: int) -> str:
    """' (the 64 random ones and 4 top users not among them)' or '' when the top users were
    all part of the random subset."""
    if n_extra == 0:
        return " (the random ones; the top users are among them)"
    return f" (the {n_random:,} random ones and {_count(n_extra, 'top user')} not among them)"


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows (Enum -> str, floats rounded)."""
    return [
        {k: round(v, 5) if isinstance(v, float) else (v if isinstance(v, int) else str(v))
         for k, v in row.items()}
        for row in frame.iter_rows(named=True)
    ]  # fmt: skip


def explain_report_section(
    model: EngagementModel,
    encoded: EncodedSamples,
    samples: pl.DataFrame,
    vocabulary: Vocabulary,
    probabilities: np.ndarray,
    out_dir: str | Path,
    *,
    target_index: int = 0,
    target_name: str = "purchase",
    n_explain: int = 2000,
    n_top_users: int = 5,
    seed: int = 0,
    steps: int = 8,
    events_per_user: int = 5,
    link_base: str | Path | None = None,
) -> ReportSection:
    """The "what drives the scores" section of a run report, for one target of the test split.

    Explains a seeded random subset of ``n_explain`` test samples (the aggregate view: a random
    subset, so the driver table describes the test population, not the top of it) and the
    ``n_top_users`` highest-scored samples by ``probabilities`` (N,) (the per-user view).
    Writes ``explain_drivers.png`` and ``explain_top_users.png`` into ``out_dir``; the markdown
    links them relative to ``link_base`` (the folder of the report; default ``out_dir``).
    ``steps`` 8: with the bisection check (`integrated_gradients`) every sample ends within
    `TOLERANCE` of completeness anyway, and 8 nodes needed the fewest gradient evaluations
    in total on the LSTM and Transformer measured (16 mostly buys precision nobody reads).
    """
    from engage_seq.reporting.explain_figures import plot_drivers, plot_top_users

    started = time.perf_counter()
    out = Path(out_dir)
    found = explain_split(
        model, encoded, samples, vocabulary, probabilities, target_index=target_index,
        n_explain=n_explain, n_top_users=n_top_users, seed=seed, steps=steps,
    )  # fmt: skip
    figures = {
        "explain_drivers": plot_drivers(
            found.drivers, out / "explain_drivers.png", target_name, MIN_CELL_EVENTS
        ),
        "explain_top_users": plot_top_users(
            found.top_events, out / "explain_top_users.png", target_name
        ),
    }
    base_dir = Path(link_base) if link_base is not None else out
    links = {
        name: Path(os.path.relpath(path, base_dir)).as_posix() for name, path in figures.items()
    }
    lines = _markdown(found, links, target_name, steps, events_per_user)
    summary = _summary(found, target_name, steps, time.perf_counter() - started)
    return ReportSection(
        title=f"What drives P({target_name})",
        markdown="\n".join(lines) + "\n",
        figures=figures,
        tables={"explain_drivers": found.drivers, "explain_top_users": found.top_events},
        summary=summary,
    )


def _markdown(
    found: SplitExplanation,
    links: dict[str, str],
    target_name: str,
    steps: int,
    events_per_user: int,
) -> list[str]:
    """The section's lines: the driver reading and figure, the top users, the method."""
    subset, top, gaps = found.subset, found.top, found.completeness_gaps
    return [
        f"Which events move P({target_name}) up or down, over "
        f"{_count(subset.size, 'random test sample')} (the driver table and figure; the top "
        "users below are explained separately and not counted in them). An event's "
        "contribution is in probability points; a user's contributions add up to their score "
        "minus the score of an equally long history of average events "
        f"(mean {found.mean_baseline_score:.3f}).",
        "",
        *_reading(found.drivers, MIN_CELL_EVENTS),
        "",
        f"![mean contribution by event type and recency]({links['explain_drivers']})",
        "",
        f"Top {top.size} users by score: their largest contributions.",
        "",
        *(
            _user_lines(found.top_events.filter(pl.col("rank") == rank), rank, events_per_user)
            for rank in range(1, top.size + 1)
        ),
        "",
        f"![per-event contributions of the top users]({links['explain_top_users']})",
        "",
        f"*Method:* integrated gradients over the event embeddings ({steps} Gauss-Legendre "
        f"nodes; the paths of {found.n_refined} samples that missed completeness by more than "
        f"{TOLERANCE} were bisected and integrated piecewise; baseline: every event replaced by "
        f"the split's mean event embedding, lengths and positions kept). Completeness error "
        f"|score - baseline - sum of contributions|: max {gaps.max():.1e}, median "
        f"{gaps.median():.1e} over all {_count(found.checks.height, 'explained sample')}"
        f"{_explained_parts(subset.size, found.checks.height - subset.size)}.",
    ]


def _summary(
    found: SplitExplanation, target_name: str, steps: int, seconds: float
) -> dict[str, Any]:
    """The section's headline numbers for ``report.json``."""
    gaps = found.completeness_gaps
    quoted = found.drivers.filter(pl.col("count") >= MIN_CELL_EVENTS)
    return {
        "target": target_name,
        "n_explained": int(found.subset.size),
        "n_top_users": int(found.top.size),
        "n_checked": int(found.checks.height),  # random subset + the top users outside it
        "steps": steps,
        "mean_baseline_score": round(found.mean_baseline_score, 5),
        "completeness_error_max": float(gaps.max()),
        "completeness_error_median": float(gaps.median()),
        "n_refined": found.n_refined,
        "score_mismatch_max": found.score_mismatch_max,
        "top_drivers": _records(quoted.head(3)),
        "bottom_drivers": _records(quoted.sort("mean_attribution").head(3)),
        "seconds": round(seconds, 2),
    }
