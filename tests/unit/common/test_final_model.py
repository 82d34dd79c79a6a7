"""Which checkpoint is a run's final model: refit.ckpt only for a ``training.refit: true`` run,
read from its (untrusted) resolved config; anything but a boolean there is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from engage_seq.common.final_model import (
    FinalModelError,
    final_baseline_file,
    final_checkpoint,
    refit_setting,
    run_refits,
)


def run_folder(tmp_path: Path, training: str | None, refit_file: bool = True) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"")
    if refit_file:
        (run / "checkpoints" / "refit.ckpt").write_bytes(b"")
    text = "seed: 7\n" + (f"training:\n  refit: {training}\n" if training is not None else "")
    (run / "config_resolved.yaml").write_text(text)
    return run


@pytest.mark.parametrize(
    ("training", "expected"), [("true", "refit.ckpt"), ("false", "best.ckpt"), (None, "best.ckpt")]
)
def test_the_final_checkpoint_follows_the_run_config(
    tmp_path: Path, training: str | None, expected: str
) -> None:
    run = run_folder(tmp_path, training)
    assert final_checkpoint(run) == run / "checkpoints" / expected
    assert final_baseline_file(run).name == (
        "baseline_refit.json" if expected == "refit.ckpt" else "baseline.json"
    )


@pytest.mark.parametrize("tampered", ["'yes'", "1", "'true'", "[true]", "null"])
def test_a_tampered_refit_value_is_refused(tmp_path: Path, tampered: str) -> None:
    run = run_folder(tmp_path, tampered)
    with pytest.raises(FinalModelError, match=r"training.refit must be true or false"):
        final_checkpoint(run)


def test_a_refit_run_without_its_refit_checkpoint_is_refused(tmp_path: Path) -> None:
    run = run_folder(tmp_path, "true", refit_file=False)
    with pytest.raises(FinalModelError, match=r"no refit.ckpt.*resume=true"):
        final_checkpoint(run)


def test_without_a_config_the_selected_checkpoint_is_final(tmp_path: Path) -> None:
    run = run_folder(tmp_path, "true")
    (run / "config_resolved.yaml").unlink()
    assert not run_refits(run)
    assert final_checkpoint(run).name == "best.ckpt"


def test_the_setting_is_read_from_a_mapping() -> None:
    assert refit_setting({"training": {"refit": True}}) is True
    assert refit_setting({"training": {}}) is False and refit_setting(None) is False
    with pytest.raises(FinalModelError, match="'training' must be a mapping"):
        refit_setting({"training": "refit"})


def test_export_and_evaluation_use_the_same_answer(tmp_path: Path) -> None:
    from engage_seq.serving.export import ExportError, find_checkpoint

    run = run_folder(tmp_path, "true")
    assert find_checkpoint(run).name == "refit.ckpt"
    assert find_checkpoint(run / "checkpoints" / "best.ckpt").name == "best.ckpt"  # as given
    (run / "config_resolved.yaml").write_text("training:\n  refit: 'yes'\n")
    with pytest.raises(ExportError, match=r"training\.refit must be true or false"):
        find_checkpoint(run)
