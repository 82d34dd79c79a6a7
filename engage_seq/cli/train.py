"""`engage-train`: the only Hydra entry point (the configured run is
`engage_seq.experiments.run.train`).

The command line is checked before Hydra acts on it, a user error is said in one line
(``-v`` / ``--verbose`` for the traceback), and a job returns its ``optimized_metric`` so
sweepers (Optuna) can optimise it.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from engage_seq.cli.user_errors import (
    VERBOSE_ENV,
    VERBOSE_FLAGS,
    user_error_message,
    wants_traceback,
)
from engage_seq.common.config_dir import CONF_DIR
from engage_seq.common.safe_config import UnsafeConfigError, check_targets
from engage_seq.common.trust import frozen_trust, trust_command_line
from engage_seq.experiments.config_checks import _check_sweep_direction, _selected
from engage_seq.experiments.hydra_precheck import check_command_line
from engage_seq.experiments.run import train

log = logging.getLogger(__name__)


def _job(cfg: DictConfig) -> float:
    """Returns the configured ``optimized_metric`` so sweepers (Optuna) can optimise it."""
    # hydra first: its env_set is already in os.environ here, and must be refused before any
    # check that might read the allow-list from there (a submitit job process does).
    check_targets(HydraConfig.get(), prefix="hydra")
    check_targets(cfg)  # this job's values (a sweep's are only known here)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    task = instantiate(cfg.task)
    _check_sweep_direction(cfg, task)
    metrics = train(cfg, run_dir)
    return metrics[_selected(cfg, "optimized_metric", task)]


def _run_job(cfg: DictConfig) -> float:
    """One job, with user errors (a missing column, a data window too short for the horizon,
    a typo'd key) said in one line instead of Hydra's traceback (`engage_seq.cli.user_errors`)."""
    try:
        return _job(cfg)
    except Exception as error:
        message = user_error_message(error)
        if message is None or wants_traceback():
            raise
        _stack_to_log_files(error)
        if HydraConfig.initialized() and HydraConfig.get().mode != RunMode.RUN:
            # A multirun goes on: Hydra reports the job, Optuna marks the trial failed and
            # continues, and the sweep report still runs. Exiting here would end them all.
            raise
        print(f"engage-train: error: {message}", file=sys.stderr)
        sys.exit(2)


def _stack_to_log_files(error: BaseException) -> None:
    """Write the stack of a user error to the run's log file (train.log) and nowhere else: the
    console gets one line, and whoever later debugs the run finds the whole story in its
    folder. Handed straight to the file handlers, so the level needs no lowering."""
    record = log.makeRecord(
        log.name,
        logging.ERROR,
        __file__,
        0,
        "engage-train stopped by %s (the one-line message went to the console)",
        (type(error).__name__,),
        (type(error), error, error.__traceback__),
    )
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)
        logger = logger.parent if logger.propagate else None


_hydra_main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")(_run_job)


def main() -> None:
    """engage-train. The command line is composed and checked (`safe_config`) before Hydra
    runs: Hydra instantiates ``hydra.callbacks`` and configures logging from the config before
    `_hydra_main` (and any check in it) starts."""
    argv = sys.argv[1:]
    if any(flag in argv for flag in VERBOSE_FLAGS):  # ours, not Hydra's: taken off argv
        os.environ[VERBOSE_ENV] = "1"
        argv = [a for a in argv if a not in VERBOSE_FLAGS]
        sys.argv = [sys.argv[0], *argv]
    with ExitStack() as stack:
        try:
            trust_command_line(argv)  # allowed_targets=[...] typed here, never from a YAML
            stack.enter_context(frozen_trust())  # as it is now: a job's env_set cannot extend it
            task_function = getattr(_hydra_main, "__wrapped__", _hydra_main)
            check_command_line(argv, CONF_DIR, "train", task_function)
        except (UnsafeConfigError, ValueError) as error:
            print(f"engage-train: error: {error}", file=sys.stderr)
            sys.exit(2)
        _hydra_main()


if __name__ == "__main__":
    main()
