"""What each row of a run report was fitted on, stated in the report when a refit is involved
(``training.refit``): a row refitted on train + validation and one fitted on the training
cutoffs alone are not the same experiment, and a reader comparing them must be told."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from engage_seq.common.final_model import training_data_text
from engage_seq.evaluation.results import Scorer, SiblingRun

REFIT_SUFFIX = " (refit on train + validation)"


def sibling_label(label: str, refit: bool) -> str:
    """A sibling run's label, marked when that run refits."""
    return label + REFIT_SUFFIX if refit else label


def training_data_note(
    refit: bool,
    recorded: Mapping[str, float],
    scorers: Sequence[Scorer],
    siblings: Sequence[SiblingRun],
    baseline_run: bool = False,
) -> list[str]:
    """The note naming every row's training data; none when nothing in the report refits
    (every row is then fitted on the training cutoffs, as the report has always said).
    ``recorded``: the run's metrics.json (a sequence model's ``train/refit_epochs``)."""
    if not refit and not any(s.label.endswith(REFIT_SUFFIX) for s in siblings):
        return []
    model = scorers[0].label if scorers else "this run's model"
    epochs = recorded.get("train/refit_epochs")
    own = _baseline_text(refit) if baseline_run else _model_text(refit, epochs)
    rows = [f"{model}, this run's model: {own}"]
    for scorer in scorers[1:]:
        if scorer.kind == "oracle":
            rows.append(f"{scorer.label}: nothing (it knows the generator's own law)")
        else:
            rows.append(f"{scorer.label}: {_baseline_text(refit)}")
    rows += [
        f"{s.label}, run {s.name}: {training_data_text(s.label.endswith(REFIT_SUFFIX))}"
        for s in siblings
    ]
    return ["Training data of each row. " + "; ".join(rows) + "."]


def _model_text(refit: bool, epochs: float | None) -> str:
    if not refit:
        return "training cutoffs"
    # metrics.json is untrusted: a NaN or inf epoch count is left out, not int()-ed
    count = f" for {int(epochs)} epochs" if epochs is not None and math.isfinite(epochs) else ""
    return (
        f"test figures from a fresh model refitted on train + validation cutoffs{count} "
        "(training.refit), validation figures from the checkpoint chosen on validation "
        "(training cutoffs only, held out)"
    )


def _baseline_text(refit: bool) -> str:
    if not refit:
        return "training cutoffs"
    return (
        "test from a refit on train + validation cutoffs, validation from the fit on the "
        "training cutoffs (held out)"
    )
