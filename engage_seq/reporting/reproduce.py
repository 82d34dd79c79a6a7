"""The "How to reproduce" commands of a run report: the ``engage-evaluate`` command that
rebuilds this very report (only settings that differ from the run's own ``report:`` block
become flags) and the ``engage-train`` command of the run, where Hydra left its overrides."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from pathlib import Path

from engage_seq.common.untrusted_yaml import read_untrusted_yaml
from engage_seq.evaluation.options import ReportOptions, flags_for, options_from_config
from engage_seq.evaluation.results import RunEvaluation
from engage_seq.evaluation.run_folder import EvaluationError

log = logging.getLogger(__name__)


def reproduce_commands(
    evaluation: RunEvaluation, out_dir: Path, options: ReportOptions
) -> list[str]:
    """[the engage-evaluate command that rebuilds this very report, the engage-train command
    of the run (only when Hydra left ``.hydra/overrides.yaml``)]. engage-evaluate starts from
    the run's own ``report:`` block, so only settings that differ from it become flags."""
    run = evaluation.run_dir
    try:
        trained = options_from_config(evaluation.config)
    except (EvaluationError, ValueError):  # a bad block fails engage-evaluate with its reason
        trained = ReportOptions()
    words = ["engage-evaluate", str(run)]
    if out_dir.resolve() != run.resolve():
        words += ["--out", str(out_dir)]
    commands = [" ".join(shlex.quote(w) for w in [*words, *flags_for(options, trained)])]
    overrides = run / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        try:  # a run folder's file: size/alias limits before parsing
            listed = read_untrusted_yaml(overrides) or []
        except ValueError as error:  # UnsafeConfigError or not YAML: only this line is lost
            log.warning("report: no engage-train command: %s", error)
            return commands
        train = " ".join(["engage-train", *(shlex.quote(str(o)) for o in listed)])
        commands.append(train)
    return commands


def reproduce_intro(commands: Sequence[str]) -> str:
    """The sentence above the commands, worded by which of them there are."""
    if len(commands) > 1:
        return "Rebuild this report (first line); train the run again (second line):"
    return (
        "Rebuild this report (the training command is not known: the run folder has no "
        "`.hydra/overrides.yaml`):"
    )
