"""``model.aggregates``: the switch that turns a sequence model into the hybrid model.

The switch is a run setting, not an `EngagementModel` argument: the model is sized by
``n_aggregates`` (how many aggregates the data gives, like ``n_numeric``), which is only known
once the samples are built. `hybrid_setup` takes the switch out of the model config and, when
it is on, fits the aggregates' standardisation on the training samples
(`engage_seq.data.aggregates`). ``model.btyd_features`` adds the BG/NBD features
(`engage_seq.models.btyd_features`): `btyd_spec` fits their parameters here and puts them into
the model config as ``btyd``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from engage_seq.baselines.bgnbd import fit_parameters
from engage_seq.data.aggregates import COLUMN_PREFIX, aggregate_names, fit_aggregate_scaling
from engage_seq.data.sequences import Task
from engage_seq.models.btyd_spec import BTYD_INPUTS

# model.* keys that are run switches, not EngagementModel arguments (hybrid_setup takes them out)
RUN_SWITCHES = ("aggregates", "btyd_features", "btyd_offset")


def hybrid_setup(
    model_cfg: DictConfig, task: Task, prepared: Any
) -> tuple[DictConfig, dict[str, dict[str, float]]]:
    """-> (the model config without ``aggregates``, the ordered aggregate scaling; {} when
    ``model.aggregates`` is false or absent). ``model.encoder: none`` needs the aggregates."""
    # a copy, resolved: cfg stays as read, and interpolations become plain values
    model_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    with open_dict(model_cfg):
        enabled = model_cfg.pop("aggregates", False)
        btyd = model_cfg.pop("btyd_features", False)
        offset = model_cfg.pop("btyd_offset", False)
    if not all(isinstance(v, bool) for v in (enabled, btyd, offset)):
        raise ValueError(
            f"model.aggregates, model.btyd_features and model.btyd_offset must be true or "
            f"false, got {enabled!r}, {btyd!r} and {offset!r}"
        )
    if offset and not btyd:
        raise ValueError("model.btyd_offset adds the BG/NBD logit: set model.btyd_features=true")
    if btyd and not enabled:
        raise ValueError(
            "model.btyd_features computes its features from the aggregates: set "
            "model.aggregates=true too"
        )
    if not enabled:
        if model_cfg.get("encoder") == "none":
            raise ValueError(
                "model.encoder=none reads no events: set model.aggregates=true (the head then "
                "reads the full-history aggregates only), or pick an encoder"
            )
        return model_cfg, {}
    numeric = list(prepared.numeric_scaling)
    names = aggregate_names(task.targets, numeric)
    train = prepared.split("train")
    scaling = fit_aggregate_scaling(train, names)
    if btyd:
        with open_dict(model_cfg):
            model_cfg.btyd = btyd_spec(train, task, scaling, offset)
    return model_cfg, scaling


def btyd_summary(samples: pl.DataFrame, target: str) -> np.ndarray:
    """(N, 3) float64 BG/NBD summary ``x, t_x, T`` in days of the samples at their newest
    cutoff whose user had an event of type ``target``, from the full-history aggregates (birth
    = the first such event), as `engage_seq.models.btyd_features` recovers it."""
    col = {name: pl.col(f"{COLUMN_PREFIX}{name}/{target}") for name in BTYD_INPUTS}
    first_days = col["first_h"].exp().sub(1.0).clip(lower_bound=0.0) / 24.0
    last_days = col["recency_h"].exp().sub(1.0).clip(lower_bound=0.0) / 24.0
    count = col["count_all"].exp().sub(1.0).round(0)
    out = (
        samples.lazy()
        .filter(pl.col("cutoff") == pl.col("cutoff").max())
        .select(
            (count - 1.0).alias("x"),
            (first_days - last_days).clip(lower_bound=0.0).alias("t_x"),  # <= T: last >= 0
            first_days.alias("T"),
            count.alias("count"),
        )
        .filter(pl.col("count") >= 1.0)
        .select("x", "t_x", "T")
        .collect()
    )
    return out.to_numpy().astype(np.float64).reshape(out.height, 3)


def btyd_spec(
    samples: pl.DataFrame,
    task: Task,
    scaling: Mapping[str, Mapping[str, float]],
    offset: bool = False,
) -> dict[str, Any]:
    """The ``btyd`` model argument: BG/NBD parameters fitted by maximum likelihood on the
    histories at the newest cutoff of ``samples`` (each user once, as the BG/NBD baseline fits
    them; labels unused), per target, and where its inputs sit among the aggregates."""
    horizon = getattr(task, "horizon_seconds", None)
    if not horizon:
        raise ValueError("model.btyd_features needs a horizon task (task.horizon_seconds)")
    order = list(scaling)
    targets = []
    for target in task.targets:
        summary = btyd_summary(samples, target)
        if summary.shape[0] < 2:
            raise ValueError(
                f"model.btyd_features: the training samples' newest cutoff has "
                f"{summary.shape[0]} user(s) with a {target!r} event; BG/NBD needs more"
            )
        params, _ = fit_parameters(summary, max_iter=500, tol=1.0e-10)
        inputs = []
        for name in BTYD_INPUTS:
            stats = scaling[f"{name}/{target}"]
            inputs.append([order.index(f"{name}/{target}"), stats["mean"], stats["std"]])
        targets.append({"name": target, "params": [float(p) for p in params], "inputs": inputs})
    return {"horizon_days": float(horizon) / 86_400.0, "offset": offset, "targets": targets}


def refit_btyd(model_cfg: DictConfig, newest: pl.DataFrame, task: Task, scaling: Any) -> DictConfig:
    """``training.refit``: the model config with its BG/NBD parameters refitted on ``newest``
    (the validation samples: the newest cutoff of train + validation), as the BG/NBD
    baseline's refit is; unchanged without BG/NBD features."""
    if not model_cfg.get("btyd"):
        return model_cfg
    model_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    with open_dict(model_cfg):
        model_cfg.btyd = btyd_spec(newest, task, scaling, bool(model_cfg.btyd.get("offset")))
    return model_cfg
