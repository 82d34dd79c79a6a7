"""Which code a config may name: the one checker every config goes through.

Hydra's ``instantiate`` imports and calls whatever a ``_target_`` names (``os.system`` would run
a shell), and Hydra itself calls what ``hydra.callbacks``, ``hydra.launcher``, ``hydra.sweeper``
(and its ``custom_search_space``) and the ``()``/``class`` keys of ``hydra.job_logging`` /
``hydra.hydra_logging`` name; a ``hydra.sweeper.params`` key ending in ``_target_`` names code
through each value it sweeps. Every such entry, ``hydra.*`` included, goes through one checker,
`check_targets`: it passes classes defined in engage_seq, `DEFAULT_TARGETS` (the Trainer and the
Hydra launchers/sweepers the checked-in conf/ selects), `LOGGING_CLASSES` in logging nodes, and
the names *the person running the command* trusts. It also refuses ``hydra.job.env_set`` /
``env_copy`` of `PROTECTED_ENV` variables (`check_job_env`): Hydra sets them inside each job.
Anything else is refused with the node's key path before anything is imported or called.

Trust never comes from the file being checked (its own ``allowed_targets`` key is ignored):
extra names come only from the person running the command (`engage_seq.common.trust`).
Configs read back from run folders go through the same checker after
`engage_seq.common.untrusted_yaml` has bounded them. engage-train composes its command line the
way Hydra will and checks it (`engage_seq.experiments.hydra_precheck`) before Hydra
instantiates callbacks or configures logging.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig

from engage_seq.common.errors import EngageSeqError
from engage_seq.common.trust import ALLOWED_TARGETS_ENV, trusted_targets, user_targets_file

PACKAGE = "engage_seq"
# Third-party targets the checked-in conf/ uses (conf/trainer/default.yaml) and their alias.
ALLOWED_TARGETS: frozenset[str] = frozenset({"lightning.pytorch.Trainer", "lightning.Trainer"})
# Hydra's own launcher/sweeper and the plugins conf/ selects (hydra/launcher=slurm, its local
# twin, sweep=optuna and the samplers the Optuna plugin ships configs for).
HYDRA_TARGETS: frozenset[str] = frozenset(
    {
        "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
        "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
        *(
            f"optuna.samplers.{name}Sampler"
            for name in ("TPE", "Random", "CmaEs", "NSGAII", "MOTPE", "Grid")
        ),
    }
)
DEFAULT_TARGETS = ALLOWED_TARGETS | HYDRA_TARGETS
LOGGING_NODES = ("hydra.job_logging.", "hydra.hydra_logging.")
LOGGING_STREAMS = frozenset({"ext://sys.stdout", "ext://sys.stderr"})  # Hydra's defaults
# The logging classes Hydra's default job/hydra logging uses (and their harmless siblings):
# local streams and files only. logging.handlers.HTTPHandler, SocketHandler, SMTPHandler, ...
# send the log off the machine, so they need the person's trust like any other name.
LOGGING_CLASSES = frozenset(
    {
        "logging.StreamHandler",
        "logging.FileHandler",
        "logging.NullHandler",
        "logging.Formatter",
        "logging.Filter",
    }
)
# Environment variables a config must not set for its jobs (hydra.job.env_set) nor copy into
# them (hydra.job.env_copy): Hydra applies env_set inside each job, so ENGAGE_SEQ_ALLOWED_TARGETS
# (or a *_FILE, HOME or XDG_CONFIG_HOME moving the user file) would let the YAML extend the
# allow-list it is checked against; the others decide which code a job process loads.
PROTECTED_ENV_PREFIX = "ENGAGE_SEQ_"
PROTECTED_ENV = frozenset(
    {
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "HOME",
        "XDG_CONFIG_HOME",
    }
)
# env_copy first: Hydra copies its entries into env_set; the message names what was written
ENV_NODES = ("hydra.job.env_copy", "hydra.job.env_set")
SWEEPER_PARAMS = "hydra.sweeper.params"
# Nesting beyond this is an interpolation cycle here, and refused in a run folder's config.
MAX_YAML_DEPTH = 64


class UnsafeConfigError(EngageSeqError, ValueError):
    """A config is refused before use: too big, aliased, interpolated, or names foreign code."""


class UnsafeTargetError(UnsafeConfigError):
    """A config names a ``_target_`` (or other callable) outside engage_seq and the allow-list."""


# ---- the checker ---------------------------------------------------------------------------


def _child(cfg: DictConfig | ListConfig, key: Any) -> Any:
    """cfg[key] with interpolations resolved (so ``${...}`` cannot hide a node); None where it
    is ``???`` or cannot be resolved yet, and instantiate would fail on it anyway."""
    try:
        return cfg[key]
    except Exception:  # MissingMandatoryValue, InterpolationResolutionError, ...
        return None


def _entries(cfg: Any) -> Iterator[tuple[Any, Any, str]]:
    """(key, value, path suffix) of a mapping or list node, OmegaConf or plain."""
    if isinstance(cfg, DictConfig):
        for key in cfg:
            value = _child(cfg, key)
            if key == "_target_" and value is None:  # unresolvable: check the raw text
                value = getattr(cfg._get_node(key), "_value", lambda: None)()
            yield key, value, f".{key}"
    elif isinstance(cfg, ListConfig):
        for i in range(len(cfg)):
            yield i, _child(cfg, i), f"[{i}]"
    elif isinstance(cfg, dict):
        for key, value in cfg.items():
            yield key, value, f".{key}"
    elif isinstance(cfg, list):
        for i, value in enumerate(cfg):
            yield i, value, f"[{i}]"


def _names_code(path: str, key: Any, value: Any) -> bool:
    """Whether this entry names something Hydra or the package will import and call."""
    if key == "_target_":
        return True
    if value is None:
        return False
    if path == "hydra.sweeper.custom_search_space":  # the Optuna sweeper instantiates it
        return True
    in_logging = path.startswith(LOGGING_NODES)  # logging.config.dictConfig calls these
    return in_logging and (key in ("()", "class") or str(value).startswith("ext://"))


def iter_targets(cfg: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(key path, value) of every entry that names code to call: ``_target_`` anywhere (lists,
    interpolated nodes and ``hydra.*`` included) and Hydra's own callables (see the module)."""
    if depth > MAX_YAML_DEPTH:  # an interpolation cycle; OmegaConf refuses those itself
        return
    for key, value, suffix in _entries(cfg):
        path = f"{prefix}{suffix}" if prefix else suffix.lstrip(".")
        if _names_code(path, key, value):
            yield path, value
        elif path == SWEEPER_PARAMS:
            yield from _swept_targets(value, path)
        elif isinstance(value, DictConfig | ListConfig | dict | list):
            yield from iter_targets(value, path, depth + 1)


def _swept_values(key: str, value: Any) -> list[Any]:
    """The values a sweeper gives ``key``: each of ``a,b`` / ``choice(a,b)`` / ``range(..)``,
    the one value of a plain override, or the raw text where it cannot be enumerated
    (``interval(...)``, a parse error), which then fails the check: refused, never skipped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    if isinstance(value, ListConfig | list):
        return list(value)
    try:
        override = OverridesParser.create().parse_override(f"{key}={value}")
        parsed = override.value()
        if isinstance(parsed, ChoiceSweep | RangeSweep):
            return list(override.sweep_string_iterator())
        if override.is_sweep_override():
            return [value]
    except Exception:  # hydra.errors.HydraException: the sweeper will refuse it too
        return [value]
    return list(parsed) if isinstance(parsed, list) else [parsed]


def _swept_targets(params: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``hydra.sweeper.params`` entries whose key names code (``data.source._target_:
    torch.load,json.loads``; ``+``/``++`` prefixes too): each swept value, as
    ``hydra.sweeper.params.<key>``. Other params are plain values."""
    for key, value, suffix in _entries(params):
        swept = str(key).lstrip("+~")
        last = swept.rpartition(".")[2]
        if value is not None and _names_code(swept, last, value):
            for one in _swept_values(str(key), value):
                yield f"{path}{suffix}", one


def _node_at(cfg: Any, prefix: str, path: str) -> Any:
    """The node at dotted ``path`` of a config whose own key path is ``prefix``; None if the
    config does not hold it."""
    parts, own = path.split("."), prefix.split(".") if prefix else []
    if parts[: len(own)] != own:
        return None
    node = cfg
    for part in parts[len(own) :]:
        if isinstance(node, DictConfig):
            node = _child(node, part) if part in node else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def check_job_env(cfg: Any, prefix: str = "") -> None:
    """Refuse ``hydra.job.env_set`` / ``env_copy`` entries naming a `PROTECTED_ENV` variable or
    one starting with ``ENGAGE_SEQ_``: Hydra sets them inside every job, where they would
    extend the allow-list (or move its file) or change the code a job process loads."""
    for node_path in ENV_NODES:
        node = _node_at(cfg, prefix, node_path)
        setting = node_path.endswith("env_set")
        for key, value, suffix in _entries(node):
            name = str(key if setting else value)
            if name.startswith(PROTECTED_ENV_PREFIX) or name in PROTECTED_ENV:
                raise UnsafeConfigError(
                    f"config key {node_path}{suffix} {'sets' if setting else 'copies'} {name} "
                    "for every job, and a config may not (it decides which code is trusted or "
                    f"loaded); set {name} in your own shell instead and remove it from the config"
                )


def _import_object(target: str) -> Any:
    """The object a dotted name points to (the longest importable module, then attributes);
    None if there is none. Plain importlib, so export needs no Hydra."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except Exception:  # not a module (or a broken one): try a shorter prefix
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def _is_package_class(target: str) -> bool:
    """A class *defined* in engage_seq: ``engage_seq.experiments.run.os.system`` imports through our
    module but names os.system, so the object's own module is what counts."""
    if target != PACKAGE and not target.startswith(PACKAGE + "."):
        return False
    obj = _import_object(target)
    module = getattr(obj, "__module__", "") or ""
    return inspect.isclass(obj) and (module == PACKAGE or module.startswith(PACKAGE + "."))


def _allowed(path: str, value: Any, allowed: frozenset[str]) -> bool:
    if not isinstance(value, str):
        return False
    if value in allowed or _is_package_class(value):
        return True
    return path.startswith(LOGGING_NODES) and (value in LOGGING_STREAMS or value in LOGGING_CLASSES)


def check_targets(cfg: Any, extra: Iterable[str] | None = None, prefix: str = "") -> None:
    """Refuse the first entry naming code that is not an engage_seq class or allow-listed.

    ``extra``: names trusted beyond `DEFAULT_TARGETS`; None (the default) means the person's
    own (`trusted_targets`). Never the config's own ``allowed_targets``. ``prefix`` names the
    node being checked (``"hydra"`` for ``HydraConfig.get()``)."""
    check_job_env(cfg, prefix)  # first: such a job would already see an extended list
    allowed = DEFAULT_TARGETS | frozenset(trusted_targets() if extra is None else extra)
    for path, value in iter_targets(cfg, prefix):
        if _allowed(path, value, allowed):
            continue
        name = str(value)[:200]
        own = _child(cfg, "allowed_targets") if isinstance(cfg, DictConfig) else None
        if isinstance(cfg, dict):
            own = cfg.get("allowed_targets")
        ignored = (
            " (the config's own allowed_targets list is ignored: a file cannot vouch for itself)"
            if isinstance(own, Iterable) and name in {str(n) for n in own}
            else ""
        )
        raise UnsafeTargetError(
            f"config key {path} = {name!r} is not a class of engage_seq nor allow-listed"
            f"{ignored}; if you trust it, set {ALLOWED_TARGETS_ENV}={name} (comma-separated), "
            f"list it in {user_targets_file() or 'the user allow-list file'}, or pass "
            f"'allowed_targets=[{name}]' on the engage-train command line"
        )
