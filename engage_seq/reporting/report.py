"""The per-run evaluation report: ``report.md`` + ``figures/*.png`` + ``report.json`` (every
number shown) + ``tables/*.csv``, and the same text and figures in the run's TensorBoard
(``tensorboard/report/``, next to the training curves).

`write_report` lays out what `engage_seq.evaluation.run_evaluation` computed, in named steps:
a plain-language summary for a marketing reader (what was predicted, for which period, how good
against the baselines and the oracle, what the top 10 % by score capture;
`engage_seq.reporting.horizon_summary`), per horizon target the comparison table on the test
period with ROC/PR, calibration, gains/lift and score-distribution figures
(`engage_seq.reporting.horizon`, `.horizon_figures`), a next-event section (accuracy table,
confusion matrix; `engage_seq.reporting.next_event`) where the task has one, the optional
sections of other modules (explanations, segment fairness) and how to reproduce it all
(`engage_seq.reporting.reproduce`). Curve numbers (calibration bins, deciles) are computed
without matplotlib (`engage_seq.reporting.curves`), so a report without the ``plots`` extra
still has every table.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq.common.io import write_json_atomic, write_text_atomic
from engage_seq.common.times import window_text
from engage_seq.data.cache import PreparedSamples
from engage_seq.data.tasks import next_event_part
from engage_seq.evaluation.options import ReportOptions
from engage_seq.evaluation.results import RunEvaluation, metric_key
from engage_seq.evaluation.run_evaluation import evaluate_run
from engage_seq.reporting.calibration_text import base_rate_flag, calibration_payload
from engage_seq.reporting.draft import ReportDraft
from engage_seq.reporting.horizon import horizon_markdown, target_report
from engage_seq.reporting.horizon_summary import horizon_summary
from engage_seq.reporting.next_event import write_next_event_part
from engage_seq.reporting.page import assemble_page
from engage_seq.reporting.report_files import (
    TENSORBOARD_DIR,
    log_to_tensorboard,
    matplotlib_available,
    previous_outputs,
    remove_stale,
    report_payload,
    write_table,
)
from engage_seq.reporting.reproduce import reproduce_commands
from engage_seq.reporting.section import ReportSection, json_safe
from engage_seq.reporting.wording import as_words as _words  # the sections below say _words
from engage_seq.reporting.wording import fmt

log = logging.getLogger(__name__)


# --- sections from other modules ----------------------------------------------------------------


def _relink(section: ReportSection, figures_dir: Path, report_dir: Path) -> ReportSection:
    """Point a section's bare figure names (``![..](x.png)``) at ``figures/x.png``."""
    markdown = section.markdown
    for path in section.figures.values():
        path = Path(path)
        try:
            relative = path.resolve().relative_to(report_dir.resolve()).as_posix()
        except ValueError:
            continue
        markdown = re.sub(rf"\]\({re.escape(path.name)}\)", f"]({relative})", markdown)
    section.markdown = markdown
    return section


def explain_section(
    evaluation: RunEvaluation, options: ReportOptions, figures_dir: Path
) -> ReportSection | str:
    """`engage_seq.evaluation.explain` on the test split's first target, or why it is not there."""
    test = evaluation.splits["test"]
    if evaluation.model is None or test.encoded is None:
        return "explanations need a sequence model; this is a baseline run"
    if not evaluation.targets:
        return "explanations cover horizon targets; this task has none"
    if evaluation.model.config.get("encoder") == "none":
        return "explanations attribute to events; this model reads the aggregates only"
    from engage_seq.reporting.explain_section import explain_report_section

    target = evaluation.targets[0]
    return explain_report_section(
        evaluation.model,
        test.encoded,
        test.frame,
        evaluation.vocabulary,
        # the raw model's scores: integrated gradients explain the logit, before calibration
        evaluation.run.uncalibrated.get("test", evaluation.run.horizon["test"])[:, 0],
        figures_dir,
        target_index=0,
        target_name=target,
        n_explain=options.n_explain,
    )


def fairness_section(
    evaluation: RunEvaluation, options: ReportOptions, figures_dir: Path, report_dir: Path
) -> ReportSection | str:
    """`engage_seq.evaluation.fairness` by ``options.segments`` on the test split's first target."""
    if not options.segments:
        return "no segments configured (report.segments)"
    if not evaluation.targets:
        return "segment fairness covers horizon targets; this task has none"
    from hydra.utils import instantiate

    from engage_seq.evaluation.segments import DERIVED_SEGMENTS, segment_frame
    from engage_seq.reporting.fairness_section import fairness_report_section

    derived = [s for s in options.segments if s in DERIVED_SEGMENTS]
    declared = [s for s in options.segments if s not in DERIVED_SEGMENTS]
    cfg = evaluation.config
    test = evaluation.splits["test"]
    missing: dict[str, str] = {}  # declared columns the table lacks now: skipped, not fatal
    segments = segment_frame(
        test.frame,
        source=instantiate(cfg.data.source) if declared else None,
        mapping=instantiate(cfg.data.columns) if declared else None,
        ingest=instantiate(cfg.data.ingest) if declared else None,
        columns=declared,
        derived=derived,
        missing=missing,
    )
    shown = [s for s in options.segments if s not in missing]
    reasons = list(dict.fromkeys(missing.values()))  # one message names every missing column
    if not shown:
        return "; ".join(reasons)
    notes = [f"{r[:1].upper()}{r[1:]} Skipped here; the other segments are shown." for r in reasons]
    scores = segments.with_columns(
        pl.Series("score", evaluation.run.horizon["test"][:, 0]),
        pl.Series("label", test.horizon_labels[:, 0]),
    )
    target = evaluation.targets[0]
    overall = {
        name: evaluation.run.metrics[f"test/{metric_key(name, target, evaluation.targets)}"]
        for name in ("auroc", "positive_rate", "mean_prediction")
    }
    section = fairness_report_section(
        scores,
        shown,
        overall,
        figures_dir,
        report_dir=report_dir,
        title=f"Segment fairness: P({_words(target)})",
        notes=notes,
    )
    section.summary["skipped_columns"] = sorted(missing)
    return section


def _run_section(
    name: str, build: Callable[[], ReportSection | str], skipped: dict[str, str]
) -> ReportSection | None:
    """A section, or None with the reason in ``skipped``: a failing section never costs the
    rest of the report."""
    started = time.perf_counter()
    try:
        result = build()
    except ImportError as error:
        skipped[name] = f"not available: {error}"
        return None
    except Exception as error:
        log.exception("report: the %s section failed", name)
        skipped[name] = f"failed: {type(error).__name__}: {error}"
        return None
    if isinstance(result, str):
        skipped[name] = result
        return None
    result.summary.setdefault("seconds", round(time.perf_counter() - started, 2))
    return result


# --- the report --------------------------------------------------------------------------------


def _add_horizon_targets(draft: ReportDraft, evaluation: RunEvaluation) -> None:
    """Per horizon target: figures, section, tables and report.json entry; the first target
    opens the report's summary, the others are named after it."""
    for i, target in enumerate(evaluation.targets):
        report = target_report(evaluation, target)
        if draft.plots:
            from engage_seq.reporting.horizon_figures import draw_horizon_figures

            report.figures = draw_horizon_figures(evaluation, report, draft.figures_dir)
            draft.figures.update(report.figures)
        if i == 0:
            draft.intro, draft.summary = horizon_summary(evaluation, report)
            flag = base_rate_flag(evaluation)
            draft.intro += ["", flag] if flag else []
            draft.payload.update(calibration_payload(evaluation))
            draft.summary["base_rate_flagged"] = draft.payload["base_rate_flagged"]
        elif i == 1:
            draft.intro += ["", "**Other targets** (test ROC-AUC): " + ", ".join(
                f"{_words(t)} {fmt(evaluation.run.metrics.get(f'test/auroc/{t}'), 3)}"
                for t in evaluation.targets[1:]
            ) + "."]  # fmt: skip
        title = f"P({_words(target)} within {window_text(evaluation.horizon_seconds or 0)})"
        draft.body += [f"## {title} on the test period", ""]
        draft.body += horizon_markdown(evaluation, report, draft.out)
        tables_dir = draft.tables_dir
        rows_frame = pl.DataFrame(report.rows, infer_schema_length=None)
        draft.tables[f"metrics_{target}"] = write_table(
            rows_frame, tables_dir / f"metrics_{target}.csv"
        )
        draft.tables[f"calibration_{target}"] = write_table(
            report.calibration, tables_dir / f"calibration_{target}.csv"
        )
        decile_frame = pl.concat(
            [t.with_columns(pl.lit(label).alias("model")) for label, t in report.deciles.items()]
        )
        draft.tables[f"deciles_{target}"] = write_table(
            decile_frame, tables_dir / f"deciles_{target}.csv"
        )
        draft.payload["targets"][target] = {
            "rows": report.rows,
            "calibration": report.calibration.to_dicts(),
            "calibration_uncalibrated": (
                report.calibration_before.to_dicts()
                if report.calibration_before is not None
                else None
            ),
            "deciles": {label: t.to_dicts() for label, t in report.deciles.items()},
            "captured_top10": report.captured_top10,
            "score_means": report.score_means,
        }


def _add_next_event(draft: ReportDraft, evaluation: RunEvaluation) -> None:
    """The next-event section, its summary paragraph after the horizon one (if any)."""
    if next_event_part(evaluation.task) is None:
        return
    lines, next_payload = write_next_event_part(
        evaluation, draft.figures_dir, draft.tables_dir, draft.out, draft.plots
    )
    draft.intro += ["", *lines[:1]] if draft.intro else lines[:1]
    draft.body += lines[1:]
    draft.figures.update(next_payload.pop("figures"))
    draft.tables.update(next_payload.pop("tables"))
    draft.payload["next_event"] = next_payload
    draft.summary.setdefault("next_event_accuracy", next_payload["rows"][0]["test/accuracy"])


def _add_sections(
    draft: ReportDraft, evaluation: RunEvaluation, options: ReportOptions
) -> list[ReportSection]:
    """The sections of other modules (explanations, segment fairness); a failing one is
    listed under "Not in this report" instead."""
    figures_dir, out, skipped = draft.figures_dir, draft.out, draft.skipped
    sections: list[ReportSection] = []
    if options.explain:
        built = _run_section(
            "explanations", lambda: explain_section(evaluation, options, figures_dir), skipped
        )
        sections += [built] if built else []
    built = _run_section(
        "segment fairness",
        lambda: fairness_section(evaluation, options, figures_dir, out),
        skipped,
    )
    sections += [built] if built else []
    for section in sections:
        _relink(section, figures_dir, out)
        draft.body += [f"## {section.title}", "", section.markdown.rstrip(), ""]
        draft.figures.update({name: Path(p) for name, p in section.figures.items()})
        for name, frame in section.tables.items():
            draft.tables[name] = write_table(frame, draft.tables_dir / f"{name}.csv")
        draft.timings[section.title] = section.summary.get("seconds")
    return sections


def _write_files(draft: ReportDraft, markdown: str, payload: dict[str, Any]) -> None:
    """report.md, report.json (after noting what the previous one listed, so files no longer
    listed are removed) and the TensorBoard page."""
    out = draft.out
    write_text_atomic(out / "report.md", markdown)
    previous = previous_outputs(out)
    write_json_atomic(out / "report.json", json_safe(payload))
    remove_stale(out, previous, [*draft.figures.values(), *draft.tables.values()])


def write_report(
    run_dir: str | Path,
    evaluation: RunEvaluation | None = None,
    *,
    options: ReportOptions | None = None,
    out_dir: str | Path | None = None,
    prepared: PreparedSamples | None = None,
) -> Path:
    """Evaluate ``run_dir`` (unless ``evaluation`` is given) and write its report into
    ``out_dir`` (default: the run folder). Returns the path of ``report.md``."""
    started = time.perf_counter()
    options = options or ReportOptions()
    earlier = 0.0  # evaluation time spent before this call, when it was passed in
    if evaluation is None:
        evaluation = evaluate_run(run_dir, options, prepared)
    else:
        earlier = evaluation.timings.get("evaluate", 0.0)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    draft = ReportDraft.start(evaluation, out, matplotlib_available())
    draft.figures_dir.mkdir(parents=True, exist_ok=True)
    figures_started = time.perf_counter()
    _add_horizon_targets(draft, evaluation)
    _add_next_event(draft, evaluation)
    draft.timings["figures"] = time.perf_counter() - figures_started
    sections = _add_sections(draft, evaluation, options)
    commands = reproduce_commands(evaluation, out, options)
    draft.timings["report"] = time.perf_counter() - started + earlier
    markdown = assemble_page(evaluation, draft, commands)
    payload = report_payload(evaluation, draft, sections, commands, options)
    _write_files(draft, markdown, payload)
    if options.tensorboard and draft.plots:
        try:
            log_to_tensorboard(out / TENSORBOARD_DIR, markdown, draft.figures)
        except Exception:  # the files are written; a TensorBoard hiccup must not hide them
            log.exception("report: TensorBoard page not written")
    log.info("report: %s (%.1f s)", out / "report.md", draft.timings["report"])
    return out / "report.md"
