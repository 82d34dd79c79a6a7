"""The other runs of a Hydra multirun trained on the same samples (hence the same val and
test), listed in a run's report from their own ``metrics.json``. Their folders are read as
untrusted input: a refused or broken sibling is skipped, never instantiated."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from engage_seq.common.final_model import final_checkpoint, refit_setting
from engage_seq.common.safe_config import UnsafeConfigError
from engage_seq.data.cache import cache_key
from engage_seq.data.sequences import Task
from engage_seq.evaluation.results import SiblingRun
from engage_seq.evaluation.run_folder import CONFIG_FILE, model_label, read_config, read_metrics
from engage_seq.evaluation.training_data import sibling_label

log = logging.getLogger(__name__)


def _sample_key(cfg: DictConfig, task: Task) -> str:
    return "samples-" + cache_key(
        instantiate(cfg.data.source),
        instantiate(cfg.data.columns),
        task,
        instantiate(cfg.data.sampling),
        instantiate(cfg.data.ingest),
    )


def recorded_fingerprint(run_dir: Path, cfg: DictConfig) -> str:
    """The samples a run was trained on: the fingerprint its checkpoint recorded, or (baseline
    runs record none) the cache key its configuration has with the current code."""
    checkpoint = final_checkpoint(run_dir) if (run_dir / "checkpoints").is_dir() else None
    if checkpoint is not None and checkpoint.is_file():
        meta = torch.load(checkpoint, map_location="cpu", weights_only=True).get("engage_seq", {})
        if meta.get("data_fingerprint"):
            return str(meta["data_fingerprint"])
    return _sample_key(cfg, instantiate(cfg.task))


def sibling_runs(run_dir: Path, fingerprint: str) -> list[SiblingRun]:
    """Other finished runs of the same Hydra multirun (a folder with ``multirun.yaml``) that
    were trained on the same samples (`recorded_fingerprint`), hence the same val/test."""
    sweep = run_dir.parent
    if not (sweep / "multirun.yaml").is_file():
        return []
    out = []
    for other in sorted(p for p in sweep.iterdir() if p.is_dir() and p != run_dir):
        if not (other / "metrics.json").is_file() or not (other / CONFIG_FILE).is_file():
            continue
        try:
            cfg = read_config(other)
            same = recorded_fingerprint(other, cfg) == fingerprint
            metrics = read_metrics(other)
            label = sibling_label(model_label(cfg.model), refit_setting(cfg, str(other)))
        except UnsafeConfigError as error:  # refused before anything in it was instantiated
            log.warning("report: sibling %s skipped, its config is refused: %s", other.name, error)
            continue
        except Exception as error:  # another run's files must not break this report
            log.info("report: sibling %s not read: %s", other.name, error)
            continue
        if same:
            out.append(SiblingRun(other.name, label, metrics))
    return out
