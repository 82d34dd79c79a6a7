"""The runs of a Hydra multirun as the leaderboard reads them: each run's overrides (one
spelling per value) and metrics, read as untrusted input, and the report they make.

Reads what every run writes (``.hydra/overrides.yaml``, ``metrics.json``,
``config_resolved.yaml``); needs neither Hydra nor Lightning.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from engage_seq.common.untrusted_yaml import load_untrusted_config, read_untrusted_yaml

SEED_KEY = "seed"
# Shown in the Markdown table when the runs report them (the CSV has every metric).
DISPLAY_METRICS = (
    "test/auroc",
    "test/auprc",
    "test/ece",
    "test/accuracy",
    "test/macro_f1",
    "test/nll",
    "train/fit_seconds",
)


UNSET = "(unset)"  # a key some runs override and this one does not
DELETED = "(deleted)"  # a ~key override
NO_SEED = "default"  # runs that did not override the seed
RESERVED_COLUMNS = frozenset({"rank", "n_runs", "n_nan", "seeds"})


@dataclass(frozen=True)
class Run:
    """One job of the sweep: where it is, what it overrode, what it measured."""

    name: str  # folder relative to the sweep dir
    overrides: dict[str, str]  # canonical values (see canonical_value)
    metrics: dict[str, float]
    optimized_metric: str | None


@dataclass(frozen=True)
class PairedComparison:
    """Winner minus runner-up on the seeds both ran, signed so that > 0 favours the winner.

    ``shared_seeds`` are all seeds both ran; ``differences`` the finite ones among them (a
    seed where either run scored NaN is left out and counted in ``n_nan_pairs``).
    """

    shared_seeds: tuple[str, ...]
    differences: tuple[float, ...]
    n_nan_pairs: int
    wins: int
    mean_difference: float
    p_value: float
    verdict: str
    holds: bool


@dataclass
class SweepReport:
    """Everything the leaderboard files are rendered from."""

    sweep_dir: Path
    metric: str
    mode: str  # "max" or "min": which direction of ``metric`` is better
    runs: list[Run]
    missing: list[str]  # run folders without metrics.json (failed or still running)
    unreadable: list[str]  # "folder: reason" for runs whose files could not be read
    swept: list[str]  # override keys whose value varies between runs, seed excluded
    constant: dict[str, str]
    leaderboard: pl.DataFrame  # one row per configuration, best first
    comparison: PairedComparison | None
    command: str | None = None
    seed_key: str = SEED_KEY
    alpha: float = 0.05

    @property
    def winner(self) -> dict[str, str]:
        return self.configuration(0)

    def configuration(self, row: int) -> dict[str, str]:
        """Swept key -> value for the leaderboard row ``row`` (0 = best)."""
        values = self.leaderboard.row(row, named=True)
        return {key: values[column_name(key)] for key in self.swept}


def column_name(key: str) -> str:
    """Leaderboard column of a swept key; a key named like a reserved column gets a suffix."""
    return f"{key} (override)" if key in RESERVED_COLUMNS else key


def canonical_value(value: str) -> str:
    """One spelling per value, so ``optim.lr=1e-3`` and ``optim.lr=0.001`` are one
    configuration and quoting (``'a,b'``) is not part of the value."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return str(int(text))
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) else text


def parse_overrides(lines: Iterable[Any]) -> dict[str, str]:
    """Hydra's ``overrides.yaml`` lines -> key -> canonical value (``+key`` and ``++key`` set
    the key; ``~key`` deletes it)."""
    overrides: dict[str, str] = {}
    for line in lines:
        text = str(line)
        key, sep, value = text.partition("=")
        if key.startswith("~"):
            overrides[key[1:]] = DELETED
            continue
        if not sep:
            raise ValueError(f"cannot read override {text!r} (expected key=value)")
        overrides[key.lstrip("+")] = canonical_value(value)
    return overrides


def _run_dirs(sweep_dir: Path) -> list[Path]:
    """Folders with a ``.hydra/overrides.yaml`` under ``sweep_dir``, not descending into a run
    (its subfolders are its own), into hidden folders (.submitit) or into another sweep
    (a folder with its own multirun.yaml) copied inside this one."""
    found = []
    for current, subdirs, _ in os.walk(sweep_dir):
        path = Path(current)
        if path != sweep_dir and (path / "multirun.yaml").is_file():
            subdirs.clear()
        elif (path / ".hydra" / "overrides.yaml").is_file():
            found.append(path)
            subdirs.clear()
        else:
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return sorted(found)


def _read_run(run_dir: Path, name: str) -> Run:
    """Raw YAML reads (no interpolation: values are reported as written), as untrusted input:
    size/alias limits before parsing, and the run's config passes the `_target_` check or the
    run is listed as unreadable."""
    overrides = parse_overrides(read_untrusted_yaml(run_dir / ".hydra" / "overrides.yaml") or [])
    raw = json.loads((run_dir / "metrics.json").read_text())
    if not isinstance(raw, dict):
        raise ValueError("metrics.json is not a JSON object")
    metrics = {str(k): float(v) for k, v in raw.items()}
    optimized = None
    resolved = run_dir / "config_resolved.yaml"
    if resolved.is_file():
        optimized = load_untrusted_config(resolved).get("optimized_metric")
    return Run(name, overrides, metrics, None if optimized is None else str(optimized))


def collect_runs(sweep_dir: Path) -> tuple[list[Run], list[str], list[str]]:
    """(runs, folders without metrics.json, "folder: reason" for unreadable runs)."""
    runs: list[Run] = []
    missing: list[str] = []
    unreadable: list[str] = []
    for run_dir in _run_dirs(sweep_dir):
        name = run_dir.relative_to(sweep_dir).as_posix()
        if not (run_dir / "metrics.json").is_file():
            missing.append(name)
            continue
        try:
            runs.append(_read_run(run_dir, name))
        except (OSError, ValueError, TypeError, yaml.YAMLError) as error:
            unreadable.append(f"{name}: {type(error).__name__}: {error}".replace("\n", " "))
    return runs, missing, unreadable


def natural_sort_key(value: str) -> tuple[int, float, str]:
    """Numbers in numeric order (2 before 10), then strings."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)
