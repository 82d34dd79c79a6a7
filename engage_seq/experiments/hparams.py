"""What a run shows in TensorBoard's hparams view: its hyperparameters (every sweep choice
and override included) and its final metrics."""

from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def _final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Final (best-checkpoint, fp32) metrics for the hparams view, under ``final/`` so they do
    not add a step-0 point to the per-epoch ``val/...`` learning curves."""
    return {f"final/{name}": value for name, value in metrics.items()}


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """Hyperparameters for TensorBoard's hparams view: model, task, optimiser, loss, budget,
    plus, under Hydra, every config-group choice and every command-line override, so whatever
    a sweep varied is a column there."""
    keep = {k: cfg[k] for k in ("model", "task", "optim", "loss", "seed", "batch_size")}
    keep["trainer"] = {"max_epochs": cfg.trainer.max_epochs}
    keep["data"] = {"sampling": {"max_len": cfg.data.sampling.max_len}}
    container = OmegaConf.to_container(OmegaConf.create(keep), resolve=True)
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:
            flat[prefix] = value if isinstance(value, int | float | str | bool) else str(value)

    walk("", container)
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        for group, choice in hydra_cfg.runtime.choices.items():
            if not group.startswith("hydra") and choice is not None:
                flat[f"choice.{group}"] = str(choice)
        for override in hydra_cfg.overrides.task:
            key = str(override).partition("=")[0].lstrip("+~")
            value = OmegaConf.select(cfg, key, default=None)
            if key not in flat and not isinstance(value, DictConfig | type(None)):
                flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat
