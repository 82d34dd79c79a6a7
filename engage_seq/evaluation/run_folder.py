"""What a finished run folder holds, read safely: its resolved config (untrusted input, checked
before anything in it is instantiated), its ``metrics.json``, and the labels a report gives its
model. No torch: cheap enough for the ``engage-evaluate`` argument checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from engage_seq.baselines import BASELINES, is_baseline_target
from engage_seq.common.errors import EngageSeqError
from engage_seq.common.untrusted_yaml import load_untrusted_config

CONFIG_FILE = "config_resolved.yaml"
ENCODER_LABELS = {
    "lstm": "LSTM",
    "gru": "GRU",
    "transformer": "Transformer",
    "none": "MLP on full-history aggregates",  # model.encoder=none: a neural RFM model
}
BASELINE_LABELS = {  # no parentheses: labels sit inside sentences and legends
    "rfm_logreg": "RFM logistic regression",
    "gbm": "GBM on RFM aggregates",
    "bgnbd": "BG/NBD buy-till-you-die model",
    "markov": "Markov chain on the last event",
    "most_frequent": "most frequent next event",
}


class EvaluationError(EngageSeqError, RuntimeError):
    """The folder is not a finished run that can be evaluated (the message says what to do)."""


def read_config(run_dir: Path) -> DictConfig:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise EvaluationError(
            f"no {CONFIG_FILE} in {run_dir}: pass a run folder written by engage-train"
        )
    # Untrusted input (a run folder may come from anyone): size/alias limits before parsing,
    # then every _target_ checked against the defaults and the person's own allow-list.
    config = OmegaConf.create(load_untrusted_config(path))
    assert isinstance(config, DictConfig)
    return config


def read_metrics(run_dir: Path) -> dict[str, float]:
    """The run's ``metrics.json``; {} when it has none."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    return {k: float(v) for k, v in json.loads(path.read_text()).items()}


def is_baseline_config(cfg: DictConfig) -> bool:
    """A run of a classical baseline (``model=gbm``, ...) rather than a sequence model."""
    return is_baseline_target(cfg.model.get("_target_", ""))


def model_label(model_cfg: Mapping[str, Any]) -> str:
    """'LSTM, hidden 64', 'Transformer, 2 layers × 64', 'GBM on RFM aggregates'."""
    target = str(model_cfg.get("_target_", ""))
    if is_baseline_target(target):
        name = baseline_name(target)
        return BASELINE_LABELS.get(name, name)
    encoder = str(model_cfg.get("encoder", "model"))
    hidden, layers = model_cfg.get("hidden"), int(model_cfg.get("num_layers", 1) or 1)
    layers = 1 if encoder == "none" else layers  # no encoder layers: the head's width only
    size = f"{layers} layers × {hidden}" if layers > 1 else f"hidden {hidden}"
    name = ENCODER_LABELS.get(encoder, encoder)
    if model_cfg.get("aggregates") and encoder != "none":
        name += " + full-history aggregates"  # the hybrid model
    return f"{name}, {size}"


def baseline_name(target: str) -> str:
    """'engage_seq.baselines.GradientBoostedTrees' -> 'gbm'."""
    cls_name = target.rsplit(".", 1)[-1]
    for name, cls in BASELINES.items():
        if cls.__name__ == cls_name:
            return name
    return cls_name
