"""engage-backtest's outputs: backtest.md (a table per target, the macro mean with several, and
who was scored), backtest.csv (the rows), backtest.json (everything, and the SHA-256 of the
other files) and backtest.png, written as one unit; and the lines the command prints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq.monitoring.backtest_result import TABLE_METRICS, BacktestResult, drop_text
from engage_seq.monitoring.errors import BacktestError
from engage_seq.serving.outputs import Writer, write_outputs


def markdown(result: BacktestResult) -> str:
    """One table per target (a single one for a single target), a macro-mean table with
    several, then what was read and who was scored at each cutoff."""
    inputs = result.inputs
    targets = result.targets
    lines = [
        "# Rolling backtest",
        "",
        f"`{inputs['artifact']}` on `{inputs['events']}`: task {inputs['task']}"
        + (f" ({len(targets)} targets: {', '.join(targets)})" if len(targets) > 1 else "")
        + f", a cutoff every {inputs['every']}.",
    ]
    if len(targets) == 1:
        lines += ["", *_metric_table(result.target_rows(targets[0]))]
        lines += _reference_line("Training run's test split", result.reference)
    else:
        for target in targets:
            lines += ["", f"## {target}", "", *_metric_table(result.target_rows(target))]
            lines += _reference_line("Training run's test split", result.target_reference(target))
        macro = result.rows.select("cutoff", "n_users", *_macro_columns(result.rows))
        lines += [
            "",
            f"## Macro mean over the {len(targets)} targets",
            "",
            "Each cell is the unweighted mean of the targets' values above (the unsuffixed "
            "columns of backtest.csv/.json); the positive rate is the mean of theirs.",
            "",
            *_metric_table(macro),
        ]
        lines += _reference_line("Training run's test split (macro)", result.macro_reference())
    lines += ["", "## Inputs", "", *_input_lines(result)]
    return "\n".join(lines) + "\n"


def _macro_columns(rows: pl.DataFrame) -> list[str]:
    return [m for m in ("positive_rate", *TABLE_METRICS) if m in rows.columns]


def _metric_table(rows: pl.DataFrame) -> list[str]:
    """cutoff | users | (positives) | positive rate | the metrics, from plain-named columns."""
    metrics = [m for m in TABLE_METRICS if m in rows.columns]
    has_positives = "positives" in rows.columns
    header = ["cutoff", "users", *(["positives"] if has_positives else []), "positive rate"]
    header += metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows.iter_rows(named=True):
        cells = [row["cutoff"][:10], f"{row['n_users']:,}"]
        cells += [f"{row['positives']:,}"] if has_positives else []
        cells += [_cell(row["positive_rate"]), *(_cell(row[m]) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _reference_line(label: str, reference: dict[str, float]) -> list[str]:
    shown = ", ".join(
        f"{m} {reference[m]:.3f}" for m in ("positive_rate", *TABLE_METRICS) if m in reference
    )
    return ["", f"{label}: {shown}."] if shown else []


def _input_lines(result: BacktestResult) -> list[str]:
    """Rows read and kept on ingest (with the drop reasons), and per cutoff the users with an
    event before it, those the run's eligibility rules dropped, and those scored."""
    inputs = result.inputs
    lines = []
    if "rows_read" in inputs:
        dropped = {k: n for k, n in (inputs.get("rows_dropped") or {}).items() if n}
        reasons = f" (dropped: {drop_text(dropped)})" if dropped else ""
        if inputs.get("rows_merged_same_instant"):
            reasons += f", {inputs['rows_merged_same_instant']:,} merged as line items"
        lines.append(
            f"- events: {inputs['rows_read']:,} rows read, {inputs['rows_kept']:,} kept"
            f"{reasons}; {inputs.get('users', 0):,} users"
        )
    if inputs.get("eligibility"):
        rules = ", ".join(f"{k}={v}" for k, v in inputs["eligibility"].items())
        lines.append(f"- eligibility: the run's rules ({rules})")
    rules = [c for c in result.rows.columns if c.startswith("dropped/")]
    if "n_candidates" not in result.rows.columns:
        return lines
    header = ["cutoff", "with an event before", *(f"dropped: {c[8:]}" for c in rules)]
    header.append("scored")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows.iter_rows(named=True):
        cells = [row["cutoff"][:10], f"{row['n_candidates']:,}"]
        cells += [f"{row[c]:,}" for c in rules] + [f"{row['n_users']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def write_backtest(result: BacktestResult, out: str | Path, plot: bool = True) -> dict[str, Path]:
    """backtest.csv / .json / .md (and .png) in ``out``, each atomically."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BacktestError(f"cannot write into {out}: it is a file, not a folder")
    files = {name: out / f"backtest.{name}" for name in ("csv", "json", "md")}
    writers: dict[Path, Writer] = {
        files["csv"]: result.rows.write_csv,
        files["md"]: lambda path: path.write_text(markdown(result)),
    }
    if plot:
        from engage_seq.monitoring.figures import plot_backtest, save_png

        files["png"] = out / "backtest.png"
        writers[files["png"]] = lambda path: save_png(plot_backtest(result), path)
    out.mkdir(parents=True, exist_ok=True)
    # one unit: backtest.json, renamed last, lists the SHA-256 of the other files
    write_outputs(files["csv"], writers, result.to_dict, manifest=files["json"])
    return files


def summary_text(result: BacktestResult) -> str:
    """What the command prints: a line per cutoff (and per target, with several, then the
    macro mean labelled as such) and the run's own test ROC-AUC."""
    targets = result.targets
    several = len(targets) > 1
    width = max(len(t) for t in [*targets, "macro mean"]) if several else 0
    lines = []
    for target in targets:
        for row in result.target_rows(target).iter_rows(named=True):
            lines.append(_summary_line(row, f"{target:<{width}}  " if several else ""))
    if several:
        for row in result.rows.iter_rows(named=True):
            lines.append(_summary_line(row, f"{'macro mean':<{width}}  "))
    if several:
        shown = [(t, result.target_reference(t).get("auroc")) for t in targets]
        shown.append(("macro mean", result.macro_reference().get("auroc")))
        known = [f"{t} {v:.3f}" for t, v in shown if v is not None]
        if known:
            lines.append(f"training test ROC-AUC: {', '.join(known)}")
    elif "auroc" in result.reference:
        lines.append(f"training test ROC-AUC {result.reference['auroc']:.3f}")
    return "\n".join(lines)


def _summary_line(row: dict[str, Any], label: str) -> str:
    return (
        f"{row['cutoff'][:10]}  {label}users {row['n_users']:>8,}  positive rate "
        f"{_cell(row['positive_rate'])}  ROC-AUC {_cell(row.get('auroc'))}  PR-AUC "
        f"{_cell(row.get('auprc'))}  ECE {_cell(row.get('ece'))}"
    )
