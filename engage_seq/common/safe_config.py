"""Which code a config may name, and where the trust to name more comes from.

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

Trust never comes from the file being checked: a run folder's ``config_resolved.yaml`` or a
``--config-dir`` YAML that lists ``allowed_targets: [torch.load]`` would otherwise vouch for
itself. Extra names come only from (`trusted_targets`):

- ``ENGAGE_SEQ_ALLOWED_TARGETS`` (comma-separated exact names),
- a user-level file, ``$XDG_CONFIG_HOME/engage_seq/allowed_targets.txt`` (default
  ``~/.config/...``; ``ENGAGE_SEQ_ALLOWED_TARGETS_FILE`` points elsewhere), one name a line,
- ``allowed_targets=[...]`` typed on the engage-train command line (`trust_command_line` puts
  it into the environment variable, so sweep jobs and the end-of-run report see it too).

The ``allowed_targets`` key a config holds is ignored. Configs read back from run folders
(engage-evaluate and its sibling runs, engage-export, engage-sweep-report) are untrusted input:
`load_untrusted_config` bounds their size, nesting and node count and refuses YAML anchors and
``${...}`` interpolations (both expand a few KB into GB) *before* building anything, then runs
the same checker. engage-train composes its command line the way Hydra will and checks it
(`engage_seq.experiments.hydra_precheck`) before Hydra instantiates callbacks or configures logging.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig

from engage_seq.common.errors import EngageSeqError

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
ALLOWED_TARGETS_ENV = "ENGAGE_SEQ_ALLOWED_TARGETS"
ALLOWED_TARGETS_FILE_ENV = "ENGAGE_SEQ_ALLOWED_TARGETS_FILE"
# A config engage-train writes is a few KB, ~200 nodes, ~6 levels deep: far below these.
MAX_UNTRUSTED_BYTES = 1_000_000
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 20_000
_NAME = re.compile(r"(ext://)?[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: fast, and no recursion


class UnsafeConfigError(EngageSeqError, ValueError):
    """A config is refused before use: too big, aliased, interpolated, or names foreign code."""


class UnsafeTargetError(UnsafeConfigError):
    """A config names a ``_target_`` (or other callable) outside engage_seq and the allow-list."""


# ---- where trust comes from ----------------------------------------------------------------


def user_targets_file() -> Path | None:
    """The user-level allow-list file (it need not exist); None without a home folder."""
    explicit = os.environ.get(ALLOWED_TARGETS_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    try:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    except RuntimeError:  # no HOME: no user file
        return None
    return base / "engage_seq" / "allowed_targets.txt"


def _names(items: Iterable[str], source: str) -> set[str]:
    """Validated exact names, so a typo ("torch load") fails loudly instead of trusting nothing."""
    names = {item.strip() for item in items if item.strip()}
    bad = sorted(n for n in names if not _NAME.fullmatch(n))
    if bad:
        raise ValueError(
            f"{source}: {bad[0][:80]!r} is not a dotted Python name (e.g. "
            "mycompany.sources.KafkaSource); fix or remove it"
        )
    return names


_FROZEN: frozenset[str] | None = None  # set by `frozen_trust` for the length of a command


def trusted_targets() -> frozenset[str]:
    """The names the person running the command trusts: environment variable + user file, or
    the snapshot `frozen_trust` took when the command started."""
    if _FROZEN is not None:
        return _FROZEN
    names = _names(os.environ.get(ALLOWED_TARGETS_ENV, "").split(","), ALLOWED_TARGETS_ENV)
    path = user_targets_file()
    if path is not None and path.is_file():
        lines = (line.partition("#")[0] for line in path.read_text().splitlines())
        names |= _names(lines, str(path))
    return frozenset(names)


@contextmanager
def frozen_trust() -> Iterator[frozenset[str]]:
    """Take `trusted_targets` once, now, and use that snapshot until the block ends.

    engage-train enters it in ``main()`` before Hydra runs: Hydra runs every job inside
    ``env_override(hydra.job.env_set)``, so a list re-read from ``os.environ`` inside a job
    would see what a YAML put there. In-process jobs (the basic launcher, Optuna) use this
    snapshot. A submitit job process starts from the environment ``main()`` set up (command-line
    trust included, `trust_command_line`) and re-reads it, which is why the checker also
    refuses env_set/env_copy of ``ENGAGE_SEQ_*`` and friends (`PROTECTED_ENV`), before
    anything else in the job is checked."""
    global _FROZEN
    previous = _FROZEN
    _FROZEN = trusted_targets()
    try:
        yield _FROZEN
    finally:
        _FROZEN = previous


def command_line_targets(overrides: Sequence[str]) -> list[str]:
    """The names of ``allowed_targets=[...]`` (``+``/``++`` too) among command-line overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    names: list[str] = []
    for text in overrides:
        if "allowed_targets" not in text:
            continue
        try:
            override = parser.parse_override(text)
        except Exception:  # Hydra reports a malformed override itself
            continue
        if override.key_or_group != "allowed_targets" or override.is_delete():
            continue
        if override.is_sweep_override():
            raise ValueError(
                f"{text}: allowed_targets cannot be swept; list every name once, as "
                "'allowed_targets=[a.B,c.D]'"
            )
        value = override.value()
        items = value if isinstance(value, list) else [value]
        names += sorted(_names((str(v) for v in items), "allowed_targets on the command line"))
    return names


def trust_command_line(overrides: Sequence[str]) -> None:
    """Add the command line's ``allowed_targets`` to ``ENGAGE_SEQ_ALLOWED_TARGETS`` of this
    process, so its checks, its sweep jobs (local or submitit processes inherit it) and the
    run report all trust exactly what the person typed, and nothing a YAML adds."""
    names = command_line_targets(overrides)
    if names:
        current = [n for n in os.environ.get(ALLOWED_TARGETS_ENV, "").split(",") if n.strip()]
        os.environ[ALLOWED_TARGETS_ENV] = ",".join(dict.fromkeys([*current, *names]))


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
    """A class *defined* in engage_seq: ``engage_seq.training.run.os.system`` imports through our
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


# ---- configs read back from run folders ----------------------------------------------------


def _check_yaml_shape(text: str, path: Path) -> None:
    """Walk the parser's events (linear, nothing built) and refuse anchors/aliases, deep
    nesting and huge node counts before any object exists."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise UnsafeConfigError(
                f"{path} line {line}: YAML anchors/aliases are refused in a config read back "
                "from a run folder (an alias can expand a few KB into GB; engage-train never "
                "writes them); rewrite the values out in full"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        nodes += isinstance(event, yaml.NodeEvent)
        if depth > MAX_YAML_DEPTH or nodes > MAX_YAML_NODES:
            raise UnsafeConfigError(
                f"{path} line {line}: over {MAX_YAML_DEPTH} levels deep or {MAX_YAML_NODES:,} "
                "values, far beyond any config engage-train writes; refusing to parse it"
            )


def read_untrusted_yaml(path: str | Path, max_bytes: int = MAX_UNTRUSTED_BYTES) -> Any:
    """Plain data of a YAML file from a run folder, within size, nesting and node limits and
    without anchors/aliases (checked before parsing). Raises `UnsafeConfigError`, or
    ValueError for a file that is not YAML; both name the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise UnsafeConfigError(
            f"{path} is over {max_bytes:,} bytes; the files engage-train writes are a few KB, "
            "so it is refused unread (restore the run's own file)"
        )
    try:
        text = raw.decode("utf-8")
        _check_yaml_shape(text, path)
        return yaml.load(text, Loader=_LOADER)  # a safe loader
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}".replace("\n", " ")) from None


def _refuse_interpolations(data: Any, path: Path) -> None:
    """``${...}`` would be resolved by OmegaConf (nested string interpolations blow up like
    aliases); config_resolved.yaml is written resolved, so a run's own file has none."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{key}.{k}" if key else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{key}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, str) and "${" in value:
            raise UnsafeConfigError(
                f"{path}: key {key} holds an interpolation ('${{...}}'); a run's resolved "
                "config has none, so the file was edited: restore the run's own file"
            )


def load_untrusted_config(path: str | Path, extra: Iterable[str] | None = None) -> dict:
    """A run folder's config as plain data, refused (`UnsafeConfigError` naming the file and
    key) unless it passes `read_untrusted_yaml`, has no interpolations and every entry naming
    code passes `check_targets` with ``extra`` (None: the person's `trusted_targets`)."""
    path = Path(path)
    data = read_untrusted_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UnsafeConfigError(f"{path} is not a mapping of settings; restore the run's own file")
    _refuse_interpolations(data, path)
    try:
        check_targets(data, extra)
    except UnsafeConfigError as error:  # UnsafeTargetError or a refused env_set/env_copy
        raise type(error)(f"{path}: {error}") from None
    return data
