"""`ReportOptions`: what a run report contains (the ``report:`` block of conf/train.yaml, or
the flags of ``engage-evaluate``), and the table between its fields and those flags, used both
to parse them and to print the command that rebuilds a report. No torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from engage_seq.baselines.registry import BASELINES
from engage_seq.evaluation.run_folder import CONFIG_FILE, EvaluationError, read_config


@dataclass(frozen=True)
class ReportOptions:
    """What a run report contains; the ``report:`` block of conf/train.yaml, or flags of
    ``engage-evaluate``. Unknown keys are an error, so a typo does not silently do nothing."""

    enabled: bool = True
    # reference baselines, refitted on the run's training split; those the task cannot use
    # are left out (gbm also when LightGBM is not installed, with the reason in the report)
    baselines: tuple[str, ...] = ("rfm_logreg", "gbm", "markov", "most_frequent")
    oracle: bool = True  # built-in synthetic data and a purchase target only
    oracle_replicates: int = 256  # Monte Carlo paths per user (~7 s for 25k users on 2 cores)
    oracle_max_users: int = 500_000  # user-cutoffs above this: skipped (cost grows linearly)
    siblings: bool = True  # list the other runs of the same multirun on the same samples
    explain: bool = True  # the "what drives the scores" section (engage_seq.evaluation.explain)
    n_explain: int = 2000
    # fairness section: derived (history_length, last_channel) or event-table columns; () = off
    segments: tuple[str, ...] = ("history_length", "last_channel")
    tensorboard: bool = True
    cache_dir: str | None = None  # None: the run's own cache_dir
    batch_size: int | None = None  # None: the run's eval_batch_size

    def __post_init__(self) -> None:
        """Values checked here, so a bad ``report:`` block fails before training, not after."""
        for key in ("baselines", "segments"):
            value = getattr(self, key)
            if isinstance(value, list):  # frozen: a list from Python code becomes a tuple
                object.__setattr__(self, key, value := tuple(value))
            if not isinstance(value, tuple) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                raise ValueError(
                    f"{key} must be a list of names (strings), got {value!r}; e.g. "
                    f"{key}: [{', '.join(getattr(ReportOptions, key))}]"
                )
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"baselines {unknown} unknown; valid names: {sorted(BASELINES)}")
        twice = sorted({s for s in self.segments if self.segments.count(s) > 1})
        if twice:
            raise ValueError(f"segments {twice} listed twice; name each segment once")
        for key, low in (("n_explain", 1), ("oracle_replicates", 1), ("oracle_max_users", 0)):
            _check_int(key, getattr(self, key), low)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1, "or null for eval_batch_size")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ReportOptions:
        """From a ``report:`` block (YAML lists become tuples; a bare string of names is read
        as comma-separated, not as a list of letters)."""
        values = dict(values or {})
        for key in ("enabled", "oracle", "siblings", "explain", "tensorboard"):
            if isinstance(values.get(key), str):  # e.g. from an environment variable
                values[key] = values[key].strip().lower() in ("1", "true", "yes", "on")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown report options {unknown}; known: {sorted(known)}")
        for key in ("baselines", "segments"):
            if key not in values:
                continue
            names = values[key]
            if isinstance(names, str):
                names = [n.strip() for n in names.split(",") if n.strip()]
            values[key] = tuple(names or ())
        return cls(**values)


def _check_int(key: str, value: Any, low: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        suffix = f" {hint}" if hint else ""
        raise ValueError(f"{key} must be an integer >= {low}{suffix}, got {value!r}")


def options_from_config(cfg: DictConfig) -> ReportOptions:
    """The options of a run config's ``report:`` block; `ReportOptions` defaults for a run
    trained before the block existed. Raises `EvaluationError` naming the bad setting."""
    block = cfg.get("report")
    values = OmegaConf.to_container(block, resolve=True) if block is not None else {}
    if not isinstance(values, dict):
        raise EvaluationError(f"report in {CONFIG_FILE} is not a mapping: {values!r}")
    try:
        return ReportOptions.from_mapping({str(k): v for k, v in values.items()})
    except ValueError as error:
        raise EvaluationError(f"report block of {CONFIG_FILE}: {error}") from error


def run_report_options(run_dir: str | Path) -> ReportOptions:
    """The ``report:`` block the run was trained with, so `engage-evaluate RUN` rebuilds the
    report training wrote (flags then override single settings)."""
    return options_from_config(read_config(Path(run_dir)))


# ReportOptions fields with a flag of the same name; every flag defaults to None, meaning "as
# the run's report: block says", so only what the user passed overrides it
FLAGS = (
    "baselines",
    "oracle",
    "oracle_replicates",
    "oracle_max_users",
    "siblings",
    "explain",
    "n_explain",
    "segments",
    "tensorboard",
    "cache_dir",
    "batch_size",
)


def flags_for(options: ReportOptions, base: ReportOptions) -> list[str]:
    """The `engage-evaluate` flags that turn the run's ``base`` options into ``options``, so a
    report built with flags names the command that rebuilds exactly it."""
    out: list[str] = []
    for field in FLAGS:
        value, before = getattr(options, field), getattr(base, field)
        if value == before:
            continue
        flag = field.replace("_", "-")
        if isinstance(value, bool):
            out.append(f"--{flag}" if value else f"--no-{flag}")
        elif field == "baselines" and not value:
            out.append("--no-baselines")
        elif isinstance(value, tuple):
            out += [f"--{flag}", ",".join(value)]
        elif value is not None:  # None (cache_dir, batch_size: the run's own) has no flag
            out += [f"--{flag}", str(value)]
    return out
