"""bench_quality --data customer_base: which rows it runs, when it skips one, and how it
judges the issue-21 targets (pure functions; the script itself runs in test_scripts.py)."""

from __future__ import annotations

import argparse
import types

import pytest
from helpers import REPO


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench_customer_base

    return bench_customer_base


def args(**given: object) -> argparse.Namespace:
    defaults = {"models": None, "variant": [], "with_new_variants": False}
    return argparse.Namespace(**{**defaults, **given})


def test_rows_built_in_new_and_named(bench: types.ModuleType) -> None:
    assert list(bench.chosen_variants(args())) == [
        "lstm", "gru", "transformer", "rfm_logreg", "gbm", "bgnbd",
    ]  # fmt: skip
    with_new = bench.chosen_variants(args(with_new_variants=True))
    assert with_new["aggregates_only"] == [
        "model=lstm", "model.aggregates=true", "model.encoder=none",
    ]  # fmt: skip
    named = bench.chosen_variants(
        args(models="lstm,bgnbd", variant=["gru+refit=model=gru 'training.refit=true'"])
    )
    assert named == {
        "lstm": ["model=lstm"],
        "bgnbd": ["model=bgnbd"],
        "gru+refit": ["model=gru", "training.refit=true"],
    }
    with pytest.raises(SystemExit, match="unknown variant"):
        bench.chosen_variants(args(models="lstm,cnn"))
    with pytest.raises(SystemExit, match="NAME='override"):
        bench.chosen_variants(args(variant=["a/b=model=gru"]))


def test_a_variant_whose_key_is_missing_is_skipped_with_the_reason(
    bench: types.ModuleType,
) -> None:
    data = ["data=customer_base", "task=purchase_13w"]
    assert bench.why_skipped([*data, "model=gru"]) is None
    reason = bench.why_skipped([*data, "model=gru", "model.no_such_option=true"])
    assert "model.no_such_option" in reason


def row(name: str, auc: float, brier: float, ece: float, val: float = 0.5) -> dict[str, object]:
    return {"model": name, "roc_auc": auc, "brier": brier, "calibration_error": ece,
            "val_roc_auc": val}  # fmt: skip


def test_targets_judge_the_row_chosen_on_validation(bench: types.ModuleType) -> None:
    rows = [
        row("lstm", 0.790, 0.150, 0.015, val=0.80),
        row("gru", 0.796, 0.140, 0.010, val=0.79),  # better on test, not chosen
        row("bgnbd", 0.793, 0.152, 0.030),
        row("gbm", 0.780, 0.149, 0.020),
        row("oracle", 0.7945, 0.148, 0.005),
    ]
    kinds = {"lstm": "model", "gru": "model", "bgnbd": "classical", "gbm": "classical"}
    targets = bench.issue21_targets(rows, kinds, None)
    assert targets["recommended"] == "lstm"
    assert targets["gap_to_oracle"] == pytest.approx(0.0045)
    assert targets["within_0.005_of_oracle"] is True
    assert targets["best_classical_roc_auc"] == 0.793
    assert targets["not_below_best_classical_roc_auc"] is False
    assert targets["best_classical_brier"] == 0.149
    assert targets["not_above_best_classical_brier"] is False
    assert targets["calibration_error_le_0.02"] is True and targets["all_met"] is False
    treated = [*rows, row("lstm+refit", 0.7942, 0.147, 0.012, val=0.80)]
    refit = bench.issue21_targets(treated, {**kinds, "lstm+refit": "model"}, None)
    assert refit["recommended"] == "lstm+refit"  # lstm won on validation; its recommended row
    assert refit["within_0.005_of_oracle"] is True and refit["all_met"] is True
    chosen = bench.issue21_targets(rows, kinds, "gru")
    assert chosen["recommended"] == "gru" and chosen["all_met"] is True
    assert bench.row_kind(["model=bgnbd"]) == "classical"
    assert bench.row_kind(["training.refit=true"]) == "model"  # train.yaml's lstm
