"""`ReportDraft`: the pieces of a run report as `engage_seq.reporting.report` gathers them
(markdown lines, figures and tables written so far, report.json entries, skipped parts,
notes, timings), before ``report.md`` and ``report.json`` are written from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engage_seq.evaluation.results import RunEvaluation

FIGURES_DIR = "figures"
TABLES_DIR = "tables"


@dataclass
class ReportDraft:
    out: Path  # the report's folder
    plots: bool  # matplotlib is installed: figures are drawn
    skipped: dict[str, str]  # part of the report -> why it is not there
    notes: list[str]  # caveats shown at the top
    timings: dict[str, float | None]
    intro: list[str] = field(default_factory=list)  # "In short" paragraphs
    body: list[str] = field(default_factory=list)  # the sections' markdown lines
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=lambda: {"targets": {}})  # report.json
    summary: dict[str, Any] = field(default_factory=dict)  # report.json's "summary"

    @classmethod
    def start(cls, evaluation: RunEvaluation, out: Path, plots: bool) -> ReportDraft:
        """An empty draft that carries the evaluation's skipped parts, notes and timings."""
        notes = list(evaluation.notes)
        if not plots:
            notes.append(
                "Figures skipped: matplotlib is not installed (pip install 'engage_seq[plots]')."
            )
        return cls(out, plots, dict(evaluation.skipped), notes, dict(evaluation.timings))

    @property
    def figures_dir(self) -> Path:
        return self.out / FIGURES_DIR

    @property
    def tables_dir(self) -> Path:
        return self.out / TABLES_DIR
