"""Reading what engage-train left in a run folder: its best checkpoint, the model it
describes, and its resolved configuration.

Everything here is untrusted input checked before use: the checkpoint is read with
``weights_only`` (no code runs) and its ``engage_seq`` metadata checked against
EngagementModel's signature (`checkpoint_metadata_problem`), and the configuration goes
through `engage_seq.common.safe_config.load_untrusted_config`. torch and the model classes;
no Lightning, no Hydra.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from engage_seq.common.errors import EngageSeqError
from engage_seq.common.final_model import FinalModelError, final_checkpoint
from engage_seq.common.untrusted_yaml import load_untrusted_config
from engage_seq.models.engagement import EngagementModel


class ExportError(EngageSeqError, RuntimeError):
    """The run cannot be exported, or the exported module disagrees with the model."""


def find_checkpoint(run: Path) -> Path:
    """A run folder -> its final model's checkpoint (`final_checkpoint`: ``refit.ckpt`` for a
    ``training.refit`` run, ``best.ckpt`` otherwise); a checkpoint path is returned as is."""
    if run.is_file():
        return run
    try:
        candidate = final_checkpoint(run)
    except FinalModelError as error:
        raise ExportError(str(error)) from error
    if not candidate.is_file():
        raise ExportError(
            f"no checkpoint at {candidate}; pass a run folder written by engage-train "
            "or the path of a .ckpt file"
        )
    return candidate


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/<name>.ckpt`` -> ``<run>``)."""
    return (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )


def _model_parameter_types() -> dict[str, tuple[type, bool]]:
    """EngagementModel's keyword arguments -> (expected type, required), from its signature."""
    types: dict[str, tuple[type, bool]] = {}
    for name, param in inspect.signature(EngagementModel.__init__).parameters.items():
        if name == "self":
            continue
        default = param.default
        if default is inspect.Parameter.empty:
            types[name] = (int, True)  # the required ones are all sizes
        else:
            types[name] = (list if isinstance(default, tuple | list) else type(default), False)
            if default is None:  # btyd: a mapping or none, checked by EngagementModelConfig
                types[name] = (dict, False)
    return types


def _is_type(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is dict:
        return value is None or isinstance(value, dict)
    if expected is list:
        return isinstance(value, list | tuple) and all(_is_type(v, int) for v in value)
    return isinstance(value, expected)


def checkpoint_metadata_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's ``engage_seq`` metadata, or None. weights_only loading
    runs no code, but these values still size the model and the serving vocabularies, so
    they are checked against EngagementModel's signature and against each other."""
    config = meta.get("model_config")
    if not isinstance(config, dict):
        return "model_config is not a mapping"
    expected = _model_parameter_types()
    unknown = sorted(set(config) - set(expected))
    missing = sorted(k for k, (_, required) in expected.items() if required and k not in config)
    if unknown or missing:
        return f"model_config keys unknown {unknown}, missing {missing}"
    wrong = [k for k, v in config.items() if not _is_type(v, expected[k][0])]
    if wrong:
        return f"model_config values of the wrong type: {wrong}"
    vocabulary = meta.get("vocabulary")
    if not isinstance(vocabulary, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in vocabulary.values()
    ):
        return "vocabulary is not a mapping of column -> list of strings"
    attributes = meta.get("categorical_attributes", [])
    attribute_sizes = list(config.get("attribute_sizes", []))
    if not isinstance(attributes, list) or len(attributes) != len(attribute_sizes):
        return f"categorical_attributes {attributes!r} do not match attribute_sizes"
    sizes = {
        "event_type": config["n_event_ids"],
        "channel": config["n_channel_ids"],
        **dict(zip(attributes, attribute_sizes, strict=True)),
    }
    for column, size in sizes.items():
        if column not in vocabulary or len(vocabulary[column]) + 2 != size:
            found = len(vocabulary.get(column, [])) + 2
            return f"vocabulary[{column!r}] gives {found} ids, the model expects {size}"
    return None


def load_model(checkpoint: Path) -> tuple[EngagementModel, dict[str, Any]]:
    """Rebuild the eager model from a checkpoint (weights_only: no code runs on load)."""
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(f"cannot read checkpoint {checkpoint}: {exc}") from exc
    meta = ckpt.get("engage_seq") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "model_config" not in meta:
        raise ExportError(
            f"{checkpoint} is not an engage_seq checkpoint (no 'engage_seq' metadata); "
            "export runs written by engage-train"
        )
    problem = checkpoint_metadata_problem(meta)
    if problem:
        raise ExportError(
            f"{checkpoint}: invalid engage_seq metadata: {problem}; export runs written by "
            "engage-train (retrain if the file was edited)"
        )
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ExportError(f"{checkpoint} has no state_dict; export runs written by engage-train")
    try:
        model = EngagementModel(**meta["model_config"])
        prefix = "model."
        state = {
            k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)
        }
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ExportError(f"{checkpoint}: weights do not fit the recorded model: {exc}") from exc
    return model.eval(), meta


def run_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved configuration (settings and file paths, no data), if present.

    Untrusted input that rides into the artifact's metadata: size/alias limits before parsing
    and the `_target_` check, so a hand-edited file cannot balloon the export or smuggle in a
    target that a later reader instantiates."""
    path = run_dir / "config_resolved.yaml"
    if not path.is_file():
        return None
    try:
        return load_untrusted_config(path)
    except ValueError as error:  # UnsafeConfigError, or not YAML
        raise ExportError(str(error)) from error
