"""engage-drift's outputs: drift.md (what a person reads), drift.csv (one row per feature),
drift.json (everything, and the SHA-256 of the other files) and drift.png, written as one unit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from engage_seq.monitoring.distances import shares
from engage_seq.monitoring.drift_verdicts import (
    WATCH_THRESHOLD,
    DriftReport,
    FeatureDrift,
    severity_order,
)
from engage_seq.monitoring.errors import DriftError
from engage_seq.monitoring.histograms import OTHER
from engage_seq.serving.outputs import Writer, write_outputs

INGEST_COUNTS = ("rows_dropped", "numeric_missing", "categorical_missing")  # own lines in drift.md


def markdown(report: DriftReport) -> str:
    """The verdict, a table of every feature (most severe first), what moved in those not
    "ok", and what was read on each side."""
    lines = [
        "# Drift report",
        "",
        f"Verdict: **{'drift' if report.drifted else 'no drift'}**"
        + (f" in {', '.join(f.name for f in report.drifted)}" if report.drifted else ""),
        "",
        "PSI: population stability index on the reference's bins (below the watch level "
        f"{report.features[0].watch if report.features else WATCH_THRESHOLD:g} stable, at or "
        "above the threshold: drift); JS: Jensen-Shannon distance (base 2, 0 to 1); noise: the "
        "PSI two samples of one population of these sizes show on average. Categorical "
        f"features list their {report.max_categories} largest categories (by share on either "
        f"side) and pool the rest as `{OTHER}`; PSI is computed on those bins.",
        "",
        "| feature | PSI | JS distance | threshold | verdict | noise |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for f in severity_order(report.features):
        verdict = f"{f.verdict} (no values in {f.missing_in})" if f.missing_in else f.verdict
        lines.append(
            f"| {f.name} | {number_text(f.psi, '.3f')} | {number_text(f.js_distance, '.3f')} "
            f"| {f.threshold:g} | {verdict} | {number_text(f.noise, '.2g')} |"
        )
    moved = [f for f in severity_order(report.features) if f.verdict != "ok"]
    if moved:
        lines += ["", "## What moved", ""]
        for f in moved:
            lines.append(f"- **{f.name}**: {_largest_moves(f)}")
    lines += ["", "## Inputs", "", *_input_lines(report.inputs)]
    return "\n".join(lines) + "\n"


def _input_lines(inputs: dict[str, Any]) -> list[str]:
    """Per side its kind, path and size, the rows dropped on ingest and the missing values
    kept; then the instants the scores were computed at."""
    lines = []
    for side in ("reference", "current"):
        info = inputs[side]
        size = ", ".join(
            f"{k} {v:,}"
            if isinstance(v, int)
            else f"{k} {' to '.join(v)}"
            if isinstance(v, list)
            else f"{k} {v}"
            for k, v in info.items()
            if k not in ("kind", "path", *INGEST_COUNTS) and v is not None
        )
        lines.append(f"- **{side}** ({info['kind']}): `{info['path']}`: {size}")
        lines += _ingest_lines(info)
    if "scored_at" in inputs:
        at = inputs["scored_at"]
        lines.append(f"- scores as of {at['reference']} (reference), {at['current']} (current)")
    return lines


def _ingest_lines(info: dict[str, Any]) -> list[str]:
    lines = []
    dropped = {k: n for k, n in (info.get("rows_dropped") or {}).items() if n}
    if dropped:
        reasons = ", ".join(f"{k} {n:,}" for k, n in sorted(dropped.items(), key=_by_count))
        lines.append(
            f"  - rows dropped on ingest: {sum(dropped.values()):,} of {info['rows_read']:,}"
            f" ({reasons})"
        )
    missing = [
        f"{column} {n:,}"
        for key in ("numeric_missing", "categorical_missing")
        for column, n in (info.get(key) or {}).items()
        if n
    ]
    if missing:
        lines.append(f"  - kept rows with a missing value: {', '.join(missing)}")
    return lines


def number_text(value: float, spec: str) -> str:
    """``value`` formatted with ``spec``, "n/a" for NaN (a feature with values on one side)."""
    return "n/a" if math.isnan(value) else format(value, spec)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _largest_moves(feature: FeatureDrift, n: int = 3) -> str:
    """The bins whose share changed most, e.g. "app 22% -> 51%, web 53% -> 30%"."""
    if feature.missing_in is not None:
        other = "current" if feature.missing_in == "reference" else "reference"
        n_other = sum(feature.current if other == "current" else feature.reference)
        return f"no values in the {feature.missing_in} data ({n_other:,} in the {other})"
    ref, cur = shares(np.array(feature.reference)), shares(np.array(feature.current))
    order = np.argsort(-np.abs(cur - ref), kind="stable")[:n]
    return ", ".join(f"{feature.bins[i]} {ref[i]:.1%} -> {cur[i]:.1%}" for i in order)


def write_drift_report(report: DriftReport, out: str | Path, plot: bool = True) -> dict[str, Path]:
    """drift.md / .csv / .json (and drift.png), each written atomically into ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DriftError(f"cannot write into {out}: it is a file, not a folder")
    files = {name: out / f"drift.{name}" for name in ("md", "csv", "json")}
    table = report.table()
    writers: dict[Path, Writer] = {
        files["csv"]: table.write_csv,
        files["md"]: lambda path: path.write_text(markdown(report)),
    }
    if plot:
        from engage_seq.monitoring.figures import plot_drift, save_png

        files["png"] = out / "drift.png"
        writers[files["png"]] = lambda path: save_png(plot_drift(report), path)
    out.mkdir(parents=True, exist_ok=True)
    # one unit: drift.json, renamed last, lists the SHA-256 of the other files
    # (`engage_seq.serving.outputs.check_score_outputs(csv, manifest=json)` checks a set)
    write_outputs(files["csv"], writers, report.to_dict, manifest=files["json"])
    return files
