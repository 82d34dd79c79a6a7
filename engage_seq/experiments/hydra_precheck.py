"""engage-train's command line checked before Hydra acts on it.

Hydra instantiates ``hydra.callbacks`` and configures logging from ``hydra.hydra_logging`` as
soon as it has composed the config, before the task function (`engage_seq.cli.train._hydra_main`)
and so any check inside it runs: ``+hydra.callbacks.x._target_=...`` would run even though the
job then refuses its config. So `engage_seq.cli.train.main` composes the command line first, with
Hydra's own code and inputs (search path, ``--config-dir``, config name, run mode), and runs
`engage_seq.common.safe_config.check_targets` on the result, ``hydra`` node included. It uses Hydra
internals (``hydra._internal``), pinned by the Hydra version the package is tested with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from engage_seq.common.safe_config import check_targets

# What composing a user's command line raises for a user's mistake (an unknown group or
# option, a bad override, a typo'd key, broken YAML); Hydra reports each itself and stops
# before it instantiates anything. Anything else (a TypeError because Hydra's internals
# changed) propagates: the check fails closed, never silently skipped.
COMPOSITION_ERRORS: tuple[type[Exception], ...] = (
    HydraException,  # ConfigCompositionException, MissingConfigException, OverrideParseException
    OmegaConfBaseException,  # ConfigKeyError, ValidationError, ... left unwrapped
    yaml.YAMLError,
)


class _UsageError(Exception):
    """Hydra's own argument parser reports bad flags; here they only skip the pre-check."""


def _raise_usage(message: str) -> None:
    raise _UsageError(message)


def _parse_hydra_args(argv: Sequence[str]) -> Any | None:
    """Hydra's own parse of the command line; None where Hydra will not compose a config
    (``--cfg``, ``--info``, ``--version``, shell completion, a usage error it reports)."""
    from hydra._internal.utils import get_args_parser

    if "--version" in argv:
        return None
    parser = get_args_parser()
    parser.error = _raise_usage  # type: ignore[method-assign]
    try:
        args = parser.parse_args(list(argv))
    except _UsageError:
        return None
    if args.cfg or args.info or args.shell_completion:
        return None
    return args


def compose_command_line(
    argv: Sequence[str], conf_dir: str, config_name: str, task_function: Any
) -> DictConfig | None:
    """The config (``hydra`` node included) Hydra will compose for this command line, with
    its own code: search path, ``--config-dir``, config name and run mode as `hydra.main`
    sets them. None where Hydra will not run or configure logging (``--cfg``, ``--info``,
    ``--version``, shell completion) or where composing fails on the user's input
    (`COMPOSITION_ERRORS`), which Hydra then reports itself before it instantiates anything."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import (
        create_automatic_config_search_path,
        detect_calling_file_or_module_from_task_function,
        detect_task_name,
    )
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    args = _parse_hydra_args(argv)
    if args is None:
        return None
    name = None if args.hydra_help else (args.config_name or config_name)
    calling_file, calling_module = detect_calling_file_or_module_from_task_function(task_function)
    search_path = create_automatic_config_search_path(
        calling_file, calling_module, args.config_path or conf_dir
    )
    if args.config_dir is not None:
        config_dir = os.path.abspath(args.config_dir)
        if not os.path.isdir(config_dir):
            return None
        search_path.prepend(
            provider="command-line",
            path=f"file://{config_dir}",
            anchor=SearchPathQuery(provider="schema"),
        )
    global_hydra = GlobalHydra.instance()
    previous = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        task_name = detect_task_name(calling_file, calling_module)
        hydra = Hydra.create_main_hydra2(task_name=task_name, config_search_path=search_path)
        overrides = list(args.overrides)
        mode = RunMode.RUN
        if not (args.help or args.hydra_help):  # as hydra._internal.utils._run_app decides
            mode = hydra.get_mode(config_name=name, overrides=overrides)
            if mode is None or args.multirun:
                mode = RunMode.MULTIRUN if args.multirun else mode or RunMode.RUN
                overrides.append(f"hydra.mode={mode.name}")
        return hydra.compose_config(name, overrides, run_mode=mode, with_log_configuration=False)
    except COMPOSITION_ERRORS:  # the user's mistake: Hydra reports it before it calls anything
        return None
    finally:
        global_hydra.clear()
        if previous is not None:
            global_hydra.initialize(previous)


def check_command_line(
    argv: Sequence[str], conf_dir: str, config_name: str, task_function: Any
) -> None:
    """Refuse a command line whose composed config (``hydra.callbacks``, launcher, sweeper,
    logging, and every ``_target_`` of the job) names code outside the allow-list, before
    Hydra calls any of it: Hydra instantiates callbacks and configures logging before the task
    function (and so any check inside it) runs."""
    cfg = compose_command_line(argv, conf_dir, config_name, task_function)
    if cfg is not None:
        check_targets(cfg)
