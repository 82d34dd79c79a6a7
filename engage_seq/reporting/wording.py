"""The words and markdown pieces every part of a report shares: how a target's positives are
called ("buyers"), numbers as text ("—" where undefined), the tested period, markdown tables,
and why a ranking figure is undefined."""

from __future__ import annotations

from collections.abc import Sequence

from engage_seq.common.times import date_text, window_text
from engage_seq.evaluation.results import EvaluatedSplit, is_finite


def as_words(name: str) -> str:
    """'email_click' -> 'email click'."""
    return name.replace("_", " ")


def positives_noun(target: str) -> str:
    """'buyers' for purchase; 'users with an email click' otherwise."""
    if target == "purchase":
        return "buyers"
    words = as_words(target)
    article = "an" if words[:1] in "aeiou" else "a"
    return f"users with {article} {words}"


def negatives_noun(target: str) -> str:
    return "non-buyers" if target == "purchase" else f"users without {as_words(target)}"


def fmt(value: float | None, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if is_finite(value) else "—"


def pct(value: float | None, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f} %" if is_finite(value) else "—"


def period_text(split: EvaluatedSplit, window_seconds: int) -> str:
    """'users with an event before 2026-04-27; outcomes 2026-04-27 to 2026-05-04 (UTC)'."""
    first, last = min(split.cutoffs), max(split.cutoffs)
    if first == last:
        return (
            f"users with any event before {date_text(first)}, outcomes counted from "
            f"{date_text(first)} to {date_text(first + window_seconds)} (UTC)"
        )
    return (
        f"{len(split.cutoffs)} cutoffs from {date_text(first)} to {date_text(last)}, each with the "
        f"following {window_text(window_seconds)} as its outcome window (UTC)"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def one_class_reason(rate: float | None, positives: str, period: str) -> str:
    """Why a ranking figure (ROC-AUC, lift) is undefined: the period has one class only."""
    if is_finite(rate) and rate == 0:
        return f"no {positives} in the {period} period"
    if is_finite(rate) and rate == 1:
        return f"every user of the {period} period is one of the {positives}"
    return f"the {period} period has only one outcome class"
