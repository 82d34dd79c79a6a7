"""``model.aggregates``: the switch that turns a sequence model into the hybrid model.

The switch is a run setting, not an `EngagementModel` argument: the model is sized by
``n_aggregates`` (how many aggregates the data gives, like ``n_numeric``), which is only known
once the samples are built. `hybrid_setup` takes the switch out of the model config and, when
it is on, fits the aggregates' standardisation on the training samples
(`engage_seq.data.aggregates`).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from engage_seq.data.aggregates import aggregate_names, fit_aggregate_scaling
from engage_seq.data.sequences import Task


def hybrid_setup(
    model_cfg: DictConfig, task: Task, prepared: Any
) -> tuple[DictConfig, dict[str, dict[str, float]]]:
    """-> (the model config without ``aggregates``, the ordered aggregate scaling; {} when
    ``model.aggregates`` is false or absent). ``model.encoder: none`` needs the aggregates."""
    model_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg))  # a copy: cfg stays as read
    with open_dict(model_cfg):
        enabled = model_cfg.pop("aggregates", False)
    if not isinstance(enabled, bool):
        raise ValueError(f"model.aggregates must be true or false, got {enabled!r}")
    if not enabled:
        if model_cfg.get("encoder") == "none":
            raise ValueError(
                "model.encoder=none reads no events: set model.aggregates=true (the head then "
                "reads the full-history aggregates only), or pick an encoder"
            )
        return model_cfg, {}
    numeric = list(prepared.numeric_scaling)
    names = aggregate_names(task.targets, numeric)
    return model_cfg, fit_aggregate_scaling(prepared.split("train"), names)
