"""The report's note on what each row was trained on: only when something refits, naming the
run's model, each baseline, the oracle and each sibling run."""

from __future__ import annotations

from engage_seq.evaluation.results import Scorer, SiblingRun
from engage_seq.evaluation.training_data import sibling_label, training_data_note

SCORERS = [
    Scorer("lstm", "LSTM, hidden 64", "model", ("purchase",)),
    Scorer("gbm", "GBM on RFM aggregates", "baseline", ("purchase",)),
    Scorer("oracle", "oracle", "oracle", ("purchase",)),
]
PLAIN = SiblingRun("gru", sibling_label("GRU, hidden 64", False), {})
REFITTED = SiblingRun("tf", sibling_label("Transformer, hidden 64", True), {})


def test_no_note_when_nothing_refits() -> None:
    assert training_data_note(False, {}, SCORERS, [PLAIN]) == []


def test_a_refit_run_names_every_row() -> None:
    (note,) = training_data_note(True, {"train/refit_epochs": 3.0}, SCORERS, [PLAIN])
    assert "LSTM, hidden 64, this run's model: test figures from a fresh model refitted" in note
    assert "for 3 epochs (training.refit)" in note and "held out" in note
    assert "GBM on RFM aggregates: test from a refit on train + validation cutoffs" in note
    assert "oracle: nothing" in note
    assert note.endswith("GRU, hidden 64, run gru: training cutoffs.")


def test_a_plain_run_says_so_when_a_sibling_refits() -> None:
    (note,) = training_data_note(False, {}, SCORERS, [REFITTED])
    assert "LSTM, hidden 64, this run's model: training cutoffs;" in note
    assert "Transformer, hidden 64 (refit on train + validation), run tf: train +" in note


def test_a_baseline_run_is_described_as_a_baseline() -> None:
    (note,) = training_data_note(True, {}, SCORERS, [], baseline_run=True)
    assert "this run's model: test from a refit on train + validation cutoffs" in note
    assert "checkpoint" not in note
