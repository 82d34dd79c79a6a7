"""What a run report writes besides ``report.md``: ``report.json`` (every number shown),
``tables/*.csv``, the TensorBoard page, and the clean-up of files an earlier report listed
that this one no longer has."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq import __version__
from engage_seq.common.io import atomic_path
from engage_seq.common.times import date_text, now_text
from engage_seq.data.tasks import horizon_part, next_event_part
from engage_seq.evaluation.options import ReportOptions
from engage_seq.evaluation.results import RunEvaluation
from engage_seq.reporting.draft import ReportDraft
from engage_seq.reporting.section import ReportSection

REPORT_FORMAT_VERSION = 1
TENSORBOARD_DIR = Path("tensorboard") / "report"


def write_table(frame: pl.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp)
    return path


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def previous_outputs(out: Path) -> list[Path]:
    """Figures and tables the last report in ``out`` listed (read before it is replaced)."""
    path = out / "report.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    listed = [*previous.get("figures", {}).values(), *previous.get("tables", {}).values()]
    return [out / str(p) for p in listed]


def remove_stale(out: Path, previous: list[Path], current: list[Path]) -> None:
    """A rebuild without a section must not leave that section's old figures behind; only
    files the previous report itself listed, inside ``out``, are removed."""
    keep = {Path(p).resolve() for p in current}
    for path in previous:
        if path.resolve() not in keep and inside(path, out) and path.is_file():
            path.unlink()


def log_to_tensorboard(logdir: Path, markdown: str, figures: dict[str, Path]) -> None:
    """Report text and PNGs as one TensorBoard page next to the training curves; a rebuild
    replaces the previous page rather than adding a second copy."""
    import matplotlib.image
    from torch.utils.tensorboard import SummaryWriter

    for old in logdir.glob("events.out.tfevents.*"):
        old.unlink()
    with SummaryWriter(log_dir=str(logdir)) as writer:
        writer.add_text("report", markdown)
        for name, path in figures.items():
            pixels = matplotlib.image.imread(path)[..., :3]
            writer.add_image(f"report/{name}", pixels, dataformats="HWC")


def _task_payload(evaluation: RunEvaluation) -> dict[str, Any]:
    task = evaluation.task
    horizon, next_event = horizon_part(task), next_event_part(task)
    return {
        "type": type(task).__name__,
        "name": task.name,
        "targets": list(evaluation.targets),
        "horizon_seconds": evaluation.horizon_seconds,
        "next_event_max_gap": next_event.max_gap if next_event is not None else None,
        "has_horizon": horizon is not None,
    }


def report_payload(
    evaluation: RunEvaluation,
    draft: ReportDraft,
    sections: list[ReportSection],
    commands: list[str],
    options: ReportOptions,
) -> dict[str, Any]:
    """Everything ``report.json`` holds: the draft's per-part entries, then the run's."""
    out = draft.out
    return {
        **draft.payload,
        "format_version": REPORT_FORMAT_VERSION,
        "engage_seq_version": __version__,
        "generated_at": now_text(),
        "run": evaluation.run_dir.name,
        "model": evaluation.run.label,
        "task": _task_payload(evaluation),
        "data": evaluation.data_description,
        "data_fingerprint": evaluation.data_fingerprint,
        "periods": {
            name: {"cutoffs": [date_text(c) for c in split.cutoffs], "n_samples": len(split)}
            for name, split in evaluation.splits.items()
        },
        "summary": draft.summary,
        "metrics": {
            s.name: {"label": s.label, "kind": s.kind, **s.metrics} for s in evaluation.scorers
        },
        "recorded_metrics": evaluation.recorded,
        "siblings": [{"name": s.name, "label": s.label, **s.metrics} for s in evaluation.siblings],
        "sections": {s.title: s.summary for s in sections},
        "skipped": draft.skipped,
        "notes": draft.notes,
        "figures": {
            k: p.relative_to(out).as_posix() for k, p in draft.figures.items() if inside(p, out)
        },
        "tables": {k: p.relative_to(out).as_posix() for k, p in draft.tables.items()},
        "reproduce": commands,
        "options": asdict(options),
        "timings_seconds": {k: round(v, 2) for k, v in draft.timings.items() if v is not None},
    }
