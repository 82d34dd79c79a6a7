"""One section of a run report: what a section builder (explanations, segment fairness, ...)
hands to `engage_seq.reporting.report`, so each builder owns its analysis and the report only lays
sections out. Plain data, no plotting or torch imports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON, recursively: NaN/inf -> None (``json`` would write the
    non-standard ``NaN``), numpy scalars -> Python, paths -> POSIX text, keys -> text. Shared by
    every report writer, so ``report.json`` and the sections' summaries stay valid JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return value.as_posix()
    return value
