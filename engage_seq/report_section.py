"""One section of a run report: what a section builder (explanations, segment fairness, ...)
hands to `engage_seq.report`, so each builder owns its analysis and the report only lays
sections out. Plain data, no plotting or torch imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl


@dataclass
class ReportSection:
    """``markdown`` is the section's body (without its ``##`` title, figures referenced by
    paths relative to the run folder); ``figures`` maps a short name to a PNG already written;
    ``tables`` are the frames behind the text (written as CSV next to the report);
    ``summary`` holds the section's headline numbers for ``report.json`` (JSON-safe)."""

    title: str
    markdown: str
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
