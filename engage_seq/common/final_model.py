"""Which file holds a run's final model: the one question every reader of a run folder asks
(``engage-export``, ``engage-evaluate``, the report, sibling runs), answered in one place.

A run trained with ``training.refit: true`` keeps two models: ``checkpoints/best.ckpt``, the
checkpoint chosen on validation (held out), and ``checkpoints/refit.ckpt``, a fresh model
retrained on train + validation for the selected number of epochs, which is the run's final
model. Baseline runs mirror this with ``baseline.json`` / ``baseline_refit.json``.

The run's ``config_resolved.yaml`` is untrusted input: it is read through
`engage_seq.common.untrusted_yaml.load_untrusted_config`, and ``training.refit`` must be a
plain boolean, so a tampered value is refused rather than guessed at. Standard library and
common only (no torch), so cheap argument checks can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engage_seq.common.errors import EngageSeqError
from engage_seq.common.untrusted_yaml import load_untrusted_config

CONFIG_FILE = "config_resolved.yaml"
SELECTED_CHECKPOINT = "best.ckpt"  # chosen on validation; its val/* metrics are held out
REFIT_CHECKPOINT = "refit.ckpt"  # retrained on train + validation: the final model
BASELINE_FILE = "baseline.json"  # a baseline run's fit on the training cutoffs
BASELINE_REFIT_FILE = "baseline_refit.json"  # its refit on train + validation


class FinalModelError(EngageSeqError, ValueError):
    """The run folder does not say clearly which model is final (the message says why)."""


def refit_setting(config: Mapping[str, Any] | None, source: str = CONFIG_FILE) -> bool:
    """``training.refit`` of a (possibly untrusted) config: False when absent (runs written
    before the option existed), the boolean when set, refused otherwise. A string such as
    "yes" or a number is refused, not coerced: a file that was edited by hand must not switch
    which model is served."""
    if config is None:
        return False
    training = config.get("training")
    if training is None:
        return False
    if not isinstance(training, Mapping):
        raise FinalModelError(
            f"{source}: 'training' must be a mapping such as {{refit: false}}, got "
            f"{type(training).__name__}; restore the run's own file"
        )
    value = training.get("refit", False)
    if not isinstance(value, bool):
        raise FinalModelError(
            f"{source}: training.refit must be true or false, got {value!r}; restore the "
            "run's own file"
        )
    return value


def run_refits(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` was trained with ``training.refit: true`` (False when
    it has no ``config_resolved.yaml``, e.g. a checkpoint copied on its own)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        config = load_untrusted_config(path)
    except ValueError as error:  # UnsafeConfigError, or not YAML
        raise FinalModelError(str(error)) from error
    return refit_setting(config, str(path))


def final_checkpoint(run_dir: Path) -> Path:
    """``checkpoints/refit.ckpt`` for a refit run, ``checkpoints/best.ckpt`` otherwise. A refit
    run without its refit checkpoint is refused (it did not finish), not silently served
    from the checkpoint trained on less data."""
    folder = Path(run_dir) / "checkpoints"
    if not run_refits(run_dir):
        return folder / SELECTED_CHECKPOINT
    refit = folder / REFIT_CHECKPOINT
    if not refit.is_file():
        raise FinalModelError(
            f"{run_dir} was trained with training.refit=true but has no {refit.name} in "
            f"{folder}: the run did not finish its refit. Resume it to finish (same "
            "hydra.run.dir, resume=true), or retrain with training.refit=false"
        )
    return refit


def selected_checkpoint(run_dir: Path) -> Path:
    """The checkpoint chosen on validation (whose ``val/*`` metrics are held out)."""
    return Path(run_dir) / "checkpoints" / SELECTED_CHECKPOINT


def final_baseline_file(run_dir: Path) -> Path:
    """A baseline run's final fit: ``baseline_refit.json`` when it refits, else
    ``baseline.json``."""
    return Path(run_dir) / (BASELINE_REFIT_FILE if run_refits(run_dir) else BASELINE_FILE)


def training_data_text(refit: bool) -> str:
    """How a report names what a row was fitted on."""
    return "train + validation cutoffs (refit)" if refit else "training cutoffs"
