"""The next-event part of a run report: the summary paragraph, the accuracy tables of every
scorer, the confusion matrix (figure) and the per-event precision/recall table, with its
``report.json`` payload."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engage_seq.common.times import parse_duration, window_text
from engage_seq.data.tasks import next_event_part
from engage_seq.evaluation.results import RunEvaluation
from engage_seq.reporting.report_files import write_table
from engage_seq.reporting.wording import fmt, markdown_table, pct

NEXT_EVENT_TABLE = (
    ("accuracy", "accuracy", 4),
    ("top3_accuracy", "top-3 accuracy", 4),
    ("macro_f1", "macro-F1", 4),
    ("nll", "NLL", 4),
)


def _next_event_rows(evaluation: RunEvaluation) -> list[dict[str, Any]]:
    rows = []
    for scorer in evaluation.scorers:
        if "test" not in scorer.next_event:
            continue
        values = {
            f"{split}/{m}": scorer.metrics.get(f"{split}/{m}", math.nan)
            for split in ("val", "test")
            for m, _, _ in NEXT_EVENT_TABLE
        }
        rows.append({"name": scorer.name, "label": scorer.label, "kind": scorer.kind, **values})
    for sibling in evaluation.siblings:
        values = {
            f"{split}/{m}": sibling.metrics.get(f"{split}/{m}", math.nan)
            for split in ("val", "test")
            for m, _, _ in NEXT_EVENT_TABLE
        }
        label = f"{sibling.label}, run {sibling.name}"
        rows.append({"name": sibling.name, "label": label, "kind": "sibling run", **values})
    return rows


def confusion_counts(probs: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts: rows the true next event, columns the most likely one (masked: -1)."""
    keep = classes >= 0
    flat = classes[keep] * n_classes + probs[keep].argmax(axis=1)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_table(counts: np.ndarray, names: Sequence[str]) -> pl.DataFrame:
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    hits = np.diag(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = hits / predicted
        recall = hits / support
        f1 = 2 * hits / (support + predicted)
    return pl.DataFrame(
        {
            "event": list(names),
            "support": support,
            "predicted": predicted,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    ).fill_nan(None)


def _next_event_summary(evaluation: RunEvaluation, rows: list[dict[str, Any]]) -> list[str]:
    test = evaluation.splits["test"]
    next_event = next_event_part(evaluation.task)
    assert next_event is not None
    window = parse_duration(next_event.max_gap)
    model = rows[0]
    n = int((test.next_classes >= 0).sum())
    text = (
        f"**Next event.** Which kind of event each user does next, among "
        f"{len(evaluation.next_event_classes) - 1} event types, for users whose next event "
        f"comes within {window_text(window)}. On the test period ({n:,} such users), the "
        f"model's first guess is right {pct(model['test/accuracy'])} of the time and the "
        f"right type is among its top three {pct(model['test/top3_accuracy'])} of the time"
    )
    baselines = [r for r in rows if r["kind"] == "baseline"]
    if baselines:
        best = max(baselines, key=lambda r: np.nan_to_num(r["test/accuracy"], nan=-1.0))
        text += f" ({best['label']}: {pct(best['test/accuracy'])} first-guess accuracy)"
    return [text + "."]


def _accuracy_tables(rows: list[dict[str, Any]]) -> list[str]:
    header = ["model", *(name for _, name, _ in NEXT_EVENT_TABLE)]
    return [
        "## Next event on the test period",
        "",
        "Accuracy: the most likely type is the one that happened; top-3: it is among the three "
        "most likely; macro-F1: F1 averaged over event types (rare types count as much as "
        "common ones); NLL: mean negative log-probability of what happened (lower is better).",
        "",
        *markdown_table(
            header,
            [
                [
                    f"**{r['label']}** (this run)" if i == 0 else r["label"],
                    *(fmt(r[f"test/{m}"], d) for m, _, d in NEXT_EVENT_TABLE),
                ]
                for i, r in enumerate(rows)
            ],
        ),
        "",
        "Validation period:",
        "",
        *markdown_table(
            header,
            [[r["label"], *(fmt(r[f"val/{m}"], d) for m, _, d in NEXT_EVENT_TABLE)] for r in rows],
        ),
        "",
    ]


def _confusion_figure(
    evaluation: RunEvaluation, counts: np.ndarray, figures_dir: Path, out: Path
) -> tuple[list[str], dict[str, Path]]:
    """The confusion matrix drawn and saved, and its markdown (image and caption)."""
    from engage_seq.reporting.figures import plot_confusion, save_figure

    figure = plot_confusion(
        counts,
        evaluation.next_event_classes,
        f"Next event: what {evaluation.run.label} predicts vs what happened (test period)",
    )
    path = save_figure(figure, figures_dir / "confusion_next_event.png")
    lines = [
        f"![confusion matrix]({path.relative_to(out).as_posix()})",
        "",
        "**Confusion matrix.** Each row is the event that really came next and sums to "
        "100 %; the diagonal is how often the model's first guess was right for it.",
        "",
    ]
    return lines, {"confusion_next_event": path}


def _per_class_lines(per_class: pl.DataFrame) -> list[str]:
    shown = per_class.filter(pl.col("support") > 0).sort("support", descending=True)
    lines = markdown_table(
        ["event", "support", "precision", "recall", "F1"],
        [
            [r["event"], f"{r['support']:,}", fmt(r["precision"], 3), fmt(r["recall"], 3),
             fmt(r["f1"], 3)]
            for r in shown.iter_rows(named=True)
        ],
    )  # fmt: skip
    return [*lines, ""]


def write_next_event_part(
    evaluation: RunEvaluation, figures_dir: Path, tables_dir: Path, out: Path, plots: bool
) -> tuple[list[str], dict[str, Any]]:
    """-> (summary paragraph, then the section's lines), and its report.json payload."""
    rows = _next_event_rows(evaluation)
    test = evaluation.splits["test"]
    names = evaluation.next_event_classes
    counts = confusion_counts(evaluation.run.next_event["test"], test.next_classes, len(names))
    per_class = per_class_table(counts, names)
    lines = [" ".join(_next_event_summary(evaluation, rows)), *_accuracy_tables(rows)]
    figures: dict[str, Path] = {}
    if plots:
        figure_lines, figures = _confusion_figure(evaluation, counts, figures_dir, out)
        lines += figure_lines
    lines += _per_class_lines(per_class)
    tables = {
        "next_event_per_class": write_table(per_class, tables_dir / "next_event_per_class.csv")
    }
    payload = {
        "rows": rows,
        "per_class": per_class.to_dicts(),
        "confusion": counts.tolist(),
        "classes": names,
        "figures": figures,
        "tables": tables,
    }
    return lines, payload
