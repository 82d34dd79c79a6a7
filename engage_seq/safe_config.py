"""Which ``_target_`` values a user's YAML may name before Hydra's ``instantiate`` imports and
calls them.

`instantiate` runs any importable callable (``_target_: os.system`` would run a shell), so
`engage-train` refuses, before any work, a ``_target_`` that is neither a class defined in
engage_seq nor listed exactly in `ALLOWED_TARGETS` or the run's ``allowed_targets`` (conf/
train.yaml; e.g. ``engage-train 'allowed_targets=[mycompany.sources.KafkaSource]'``). The
``hydra`` node (launcher, sweeper, callbacks) is Hydra's own and not checked here.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig

PACKAGE = "engage_seq"
# Third-party targets the checked-in conf/ uses (conf/trainer/default.yaml) and their alias.
ALLOWED_TARGETS: frozenset[str] = frozenset({"lightning.pytorch.Trainer", "lightning.Trainer"})


class UnsafeTargetError(ValueError):
    """A config names a ``_target_`` outside engage_seq and the allow-list."""


def _child(cfg: DictConfig | ListConfig, key: Any) -> Any:
    """cfg[key] with interpolations resolved (so ``${...}`` cannot hide a node); None where it
    is ``???`` or cannot be resolved yet, and instantiate would fail on it anyway."""
    try:
        return cfg[key]
    except Exception:  # MissingMandatoryValue, InterpolationResolutionError, ...
        return None


def iter_targets(cfg: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(key path, value) of every ``_target_`` in a config, lists and interpolated nodes
    included, without the top-level ``hydra`` node."""
    if depth > 64:  # an interpolation cycle; OmegaConf refuses those itself
        return
    if isinstance(cfg, DictConfig):
        for key in cfg:
            if not prefix and key == "hydra":
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            value = _child(cfg, key)
            if key == "_target_":
                node = cfg._get_node(key)
                yield path, value if value is not None else getattr(node, "_value", lambda: None)()
            else:
                yield from iter_targets(value, path, depth + 1)
    elif isinstance(cfg, ListConfig):
        for i in range(len(cfg)):
            yield from iter_targets(_child(cfg, i), f"{prefix}[{i}]", depth + 1)


def _is_package_class(target: str) -> bool:
    """A class *defined* in engage_seq: ``engage_seq.train.os.system`` imports through our
    module but names os.system, so the object's own module is what counts."""
    if target != PACKAGE and not target.startswith(PACKAGE + "."):
        return False
    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception:  # ImportError, AttributeError, or Hydra's wrapping of them
        return False
    module = getattr(obj, "__module__", "") or ""
    return inspect.isclass(obj) and (module == PACKAGE or module.startswith(PACKAGE + "."))


def check_targets(cfg: DictConfig, extra: Iterable[str] | None = None) -> None:
    """Refuse the first ``_target_`` that is not an engage_seq class or allow-listed.

    ``extra`` defaults to the config's own ``allowed_targets`` list (exact names)."""
    if extra is None:
        extra = cfg.get("allowed_targets") or []
    allowed = ALLOWED_TARGETS | {str(t) for t in extra}
    for path, value in iter_targets(cfg):
        if isinstance(value, str) and (value in allowed or _is_package_class(value)):
            continue
        raise UnsafeTargetError(
            f"config key {path} = {value!r} is not a class of engage_seq nor allow-listed; "
            f"if you trust it, add it to allowed_targets (conf/train.yaml, or "
            f"'allowed_targets=[{value}]' on the command line)"
        )
