"""``report.md`` itself: the title line, "In short", the notes, the sections gathered in a
`ReportDraft`, what is not in the report and why, and how to reproduce it."""

from __future__ import annotations

from datetime import datetime, timezone

from engage_seq import __version__
from engage_seq.evaluation.results import RunEvaluation
from engage_seq.reporting.draft import ReportDraft
from engage_seq.reporting.reproduce import reproduce_intro


def assemble_page(evaluation: RunEvaluation, draft: ReportDraft, commands: list[str]) -> str:
    """The markdown of ``report.md``, from the finished draft (its timings included)."""
    lines = [
        f"# Run report: {evaluation.run.label}, task {evaluation.task.name}",
        "",
        f"*Run `{evaluation.run_dir.name}` · {evaluation.data_description} · samples "
        f"`{evaluation.data_fingerprint}` · engage_seq {__version__} · "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC*",
        "",
        "## In short",
        "",
        *draft.intro,
        "",
    ]
    for note in draft.notes:
        lines += [f"> **Note.** {note}", ""]
    lines += draft.body
    if draft.skipped:
        lines += ["## Not in this report", ""]
        lines += [f"- {name}: {reason}" for name, reason in draft.skipped.items()]
        lines.append("")
    timings = draft.timings
    spent = ", ".join(
        f"{name} {value:.1f} s"
        for name, value in timings.items()
        if value is not None and name not in ("report", "evaluate")
    )
    lines += [
        "## How to reproduce",
        "",
        reproduce_intro(commands),
        "",
        "```bash",
        *commands,
        "```",
        "",
        f"Report built in {timings.get('report') or 0:.1f} s ({spent}).",
        "",
    ]
    return "\n".join(lines)
