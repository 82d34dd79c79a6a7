"""`engage-train`: the only Hydra entry point. train(cfg, run_dir) -> metrics.

A run folder gets: ``config_resolved.yaml``, ``data_report.json``, ``checkpoints/best.ckpt``,
``tensorboard/`` event files, ``metrics.json`` (flat ``split/name: value``) and
``golden_batch.pt`` (test inputs + the Lightning predictions of the best checkpoint, which
`engage-export` uses as its parity reference).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from engage_seq.data import EncodedSamples, EventDataModule, Vocabulary, encode_samples
from engage_seq.io import write_json_atomic, write_text_atomic
from engage_seq.model import MODEL_INPUTS
from engage_seq.module import EngagementLitModule, metric_mode
from engage_seq.sample_cache import prepare_samples
from engage_seq.sequences import FEATURE_DEFINITIONS, SPLITS, TIME_FEATURES, HorizonTask

log = logging.getLogger(__name__)
GOLDEN_BATCH_SIZE = 256


def _conf_dir() -> str:
    """The repo's top-level conf/ in a checkout; the copy inside the wheel otherwise."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no conf/train.yaml next to {here}; is the package installed fully?")


CONF_DIR = _conf_dir()


def resolve_precision(precision: str | int) -> str | int:
    """'auto' -> bf16 mixed precision on a GPU that supports it, full fp32 otherwise."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _golden_loader(encoded: EncodedSamples) -> DataLoader[Any]:
    indices = np.arange(min(GOLDEN_BATCH_SIZE, len(encoded)))
    return DataLoader([encoded.batch(indices)], batch_size=None)


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, float]:
    """Build (or reuse) samples, fit, evaluate the best checkpoint on val and test."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    monitor_mode = metric_mode(cfg.monitor)  # fail before any work on a bad metric name
    metric_mode(cfg.optimized_metric)
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    source = instantiate(cfg.data.source)
    sampling = instantiate(cfg.data.sampling)
    mapping = instantiate(cfg.data.columns)
    ingest = instantiate(cfg.data.ingest)
    task = instantiate(cfg.task)
    if not isinstance(task, HorizonTask):
        raise ValueError(
            f"engage-train trains horizon tasks for now; {type(task).__name__} samples are built "
            "by engage_seq.sample_cache.prepare_samples (the next-event head is planned)"
        )
    prepared = prepare_samples(source, task, sampling, cfg.cache_dir, mapping, ingest)
    write_json_atomic(run_dir / "data_report.json", prepared.report)
    prepare_seconds = time.perf_counter() - started
    vocabulary = Vocabulary.from_lists(prepared.vocabulary)
    encoded = {
        split: encode_samples(
            prepared.split(split),
            vocabulary,
            sampling.max_len,
            task.label_columns,
            prepared.numeric_scaling,
        )
        for split in SPLITS
    }
    datamodule = EventDataModule(
        **encoded, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size, seed=cfg.seed
    )

    model = instantiate(
        cfg.model,
        n_event_ids=vocabulary.n_event_ids,
        n_channel_ids=vocabulary.n_channel_ids,
        attribute_sizes=vocabulary.attribute_sizes,
        n_numeric=len(prepared.numeric_scaling),
        n_time_features=len(TIME_FEATURES),
        n_outputs=len(task.targets),
        max_len=sampling.max_len,
    )
    metadata = {
        "vocabulary": vocabulary.to_dict(),
        "categorical_attributes": vocabulary.attributes,
        "numeric_attributes": list(prepared.numeric_scaling),  # the order of numeric's last axis
        "numeric_scaling": prepared.numeric_scaling,
        "time_features": list(TIME_FEATURES),
        "feature_definitions": FEATURE_DEFINITIONS,
        "max_len": sampling.max_len,
        "padding": "right",
        "truncation": "keep_most_recent",
        "task": {
            "type": "horizon",
            "name": task.name,
            "targets": list(task.targets),
            "horizon": task.horizon,
            "horizon_seconds": task.horizon_seconds,
        },
        "cutoffs": prepared.plan.to_dict(),
        "data_fingerprint": prepared.cache_dir.name,
    }
    module = EngagementLitModule(
        model,
        target_names=list(task.targets),
        lr=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        unknown_token_rate=cfg.unknown_token_rate,
        metadata=metadata,
    )

    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=cfg.monitor,
        mode=monitor_mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    early_stopping = EarlyStopping(monitor=cfg.monitor, mode=monitor_mode, patience=cfg.patience)
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=[checkpoint, early_stopping],
        precision=resolve_precision(cfg.trainer.precision),
    )
    fit_started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.perf_counter() - fit_started

    # Report val/test of the best checkpoint in fp32 whatever the training precision, so the
    # figures describe the exported (fp32) model rather than its bf16-autocast twin.
    evaluator = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision="32-true",
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    module.load_state_dict(best["state_dict"])
    evaluator.validate(module, datamodule=datamodule, verbose=False)
    evaluator.test(module, datamodule=datamodule, verbose=False)
    metrics: dict[str, float] = dict(module.last_metrics)
    metrics.update(
        {
            "train/n_samples": float(len(encoded["train"])),
            "train/epochs": float(trainer.current_epoch),
            "train/best_epoch": float(best.get("epoch", -1)),
            "train/fit_seconds": round(fit_seconds, 2),
            "data/prepare_seconds": round(prepare_seconds, 2),
        }
    )
    write_json_atomic(run_dir / "metrics.json", metrics)

    # Parity reference for export: Lightning predictions of the best checkpoint, made on CPU
    # in fp32 whatever the training device and precision, because that is how the artifact
    # is served (a bf16-trained GPU run would otherwise fail the 1e-5 parity check).
    golden = _golden_loader(encoded["test"])
    reference = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (probabilities,) = reference.predict(module, dataloaders=golden)
    inputs = next(iter(golden))[:-1]
    torch.save(
        {
            **dict(zip(MODEL_INPUTS, inputs, strict=True)),
            "probabilities": probabilities.float(),
        },
        run_dir / "golden_batch.pt",
    )
    write_text_atomic(run_dir / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    logger.log_hyperparams(_flat_hparams(cfg), metrics={k: v for k, v in metrics.items()})
    log.info("metrics: %s", json.dumps(metrics, indent=1))
    return metrics


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    keep = {k: cfg[k] for k in ("model", "task", "optim", "seed", "batch_size")}
    container = OmegaConf.to_container(OmegaConf.create(keep), resolve=True)
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:
            flat[prefix] = value if isinstance(value, int | float | str | bool) else str(value)

    walk("", container)
    return flat


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = train(cfg, run_dir)
    return metrics[cfg.optimized_metric]


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
