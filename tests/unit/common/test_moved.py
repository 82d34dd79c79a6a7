"""0.1 class paths (saved run configs, users' configs and notebooks) keep resolving after the
layout change, with a warning that names the new home; nothing else is reachable through them."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class, instantiate

from engage_seq.common.config_dir import CONF_DIR
from engage_seq.common.moved import MOVED
from engage_seq.common.safe_config import UnsafeTargetError, check_targets

# the _target_ values conf/ shipped in 0.1.0, as a 0.1 run's config_resolved.yaml holds them
OLD_RUN_CONFIG = {
    "model": {"_target_": "engage_seq.model.EngagementModel", "encoder": "lstm"},
    "task": {"_target_": "engage_seq.sequences.HorizonTask", "targets": ["purchase"]},
    "data": {
        "source": {"_target_": "engage_seq.synthetic.SyntheticEventSource", "n_users": 50},
        "columns": {"_target_": "engage_seq.schema.ColumnMapping"},
        "ingest": {"_target_": "engage_seq.ingest.IngestConfig"},
        "sampling": {"_target_": "engage_seq.sequences.SamplingConfig"},
        "files": {"_target_": "engage_seq.ingest.FileEventSource", "path": "x.parquet"},
    },
    "baseline": {"_target_": "engage_seq.baselines.GradientBoostedTrees"},
    "hydra": {"callbacks": {"s": {"_target_": "engage_seq.train.SweepReportCallback"}}},
}


def _locate(path: str) -> object:
    module, _, name = path.rpartition(".")
    __import__(module)
    return getattr(sys.modules[module], name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_class_path_resolves_to_its_new_home_with_a_warning(old: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"moved to {MOVED[old]}"):
        found = get_class(old)
    assert found is _locate(MOVED[old])


def test_a_0_1_run_config_passes_the_allow_list_and_instantiates() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        check_targets(OLD_RUN_CONFIG)  # raises if any target were refused
        task = instantiate(OLD_RUN_CONFIG["task"])
        source = instantiate(OLD_RUN_CONFIG["data"]["source"])
    assert type(task).__module__ == "engage_seq.data.tasks" and task.targets == ("purchase",)
    assert type(source).__name__ == "SyntheticEventSource" and source.n_users == 50


@pytest.mark.parametrize(
    "target", ["engage_seq.model.torch", "engage_seq.train.os.system", "engage_seq.score.main"]
)
def test_an_old_module_name_reaches_nothing_but_its_moved_classes(target: str) -> None:
    with pytest.raises(UnsafeTargetError):
        check_targets({"x": {"_target_": target}})


def test_conf_names_no_old_path() -> None:
    """The checked-in configs use the new homes (so a plain run prints no warning)."""
    old = []
    for path in Path(CONF_DIR).rglob("*.yaml"):
        text = path.read_text()
        old += [f"{path.name}: {name}" for name in MOVED if f"_target_: {name}\n" in text]
    assert not old, old
    assert yaml.safe_load((Path(CONF_DIR) / "train.yaml").read_text())  # the scan read YAML


def test_importing_the_package_warns_about_nothing() -> None:
    code = "import engage_seq, engage_seq.data, engage_seq.serving.scoring"
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code], capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
