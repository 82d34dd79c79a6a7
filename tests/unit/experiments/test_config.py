"""Every YAML under conf/ composes, and every _target_ in it instantiates."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from engage_seq.baselines import BASELINES
from engage_seq.common.config_dir import CONF_DIR
from engage_seq.data.tasks import next_event_part
from engage_seq.experiments.config_checks import _check_selected_metrics, _selected
from engage_seq.experiments.hybrid import RUN_SWITCHES, hybrid_setup
from engage_seq.metrics.direction import metric_mode
from engage_seq.models.engagement import EngagementModel

GROUPS = sorted(str(p.relative_to(CONF_DIR)) for p in Path(CONF_DIR).rglob("*") if p.is_dir())
CHOICES = [(g, p.stem) for g in GROUPS for p in sorted((Path(CONF_DIR) / g).glob("*.yaml"))]
# Options with mandatory values (???) get one, as a user would on the command line.
REQUIRED = {"files": ["data.source.path=events.parquet"]}


def test_every_yaml_is_covered() -> None:
    all_yaml = {p.relative_to(CONF_DIR) for p in Path(CONF_DIR).rglob("*.yaml")}
    covered = {Path(g) / f"{name}.yaml" for g, name in CHOICES} | {Path("train.yaml")}
    assert all_yaml == covered


@pytest.mark.parametrize(("group", "choice"), CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_group_option_composes_and_instantiates(group: str, choice: str) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = [f"{group}={choice}", *REQUIRED.get(choice, [])]
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    source = instantiate(cfg.data.source)
    assert hasattr(source, "scan") and hasattr(source, "fingerprint")
    instantiate(cfg.data.columns)
    instantiate(cfg.data.ingest)
    sampling = instantiate(cfg.data.sampling)
    task = instantiate(cfg.task)
    if str(cfg.model._target_).startswith("engage_seq.baselines."):
        model = instantiate(cfg.model)
        assert type(model) in BASELINES.values()
    else:
        has_next = next_event_part(task) is not None
        hybrid = bool(cfg.model.get("aggregates", False))  # sized from the data in a run
        model_cfg = cfg.model
        if not hybrid:
            model_cfg, _ = hybrid_setup(cfg.model, task, None)  # the switch: the run's own
        else:
            model_cfg = OmegaConf.create(OmegaConf.to_container(cfg.model))
            with open_dict(model_cfg):  # switches; the BG/NBD spec is fitted on data in a run
                for switch in RUN_SWITCHES:
                    model_cfg.pop(switch, None)
        model = instantiate(
            model_cfg,
            n_aggregates=4 if hybrid else 0,
            n_event_ids=10,
            n_channel_ids=6,
            n_time_features=6,
            n_outputs=len(task.targets),
            n_next_classes=9 if has_next else 0,
            max_len=sampling.max_len,
        )
        assert isinstance(model, EngagementModel)
    trainer = instantiate(cfg.trainer, precision="32-true", logger=False)
    assert isinstance(trainer, L.Trainer)
    assert cfg.optimized_metric == "auto" or cfg.optimized_metric.startswith("val/")
    metric_mode(_selected(cfg, "monitor", task))


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_selected_metrics_are_checked_against_what_the_run_reports() -> None:
    cfg = _compose("task=purchase_7d_next_event", "model=markov")
    task = instantiate(cfg.task)
    assert _check_selected_metrics(cfg, task) == "val/nll"  # markov has no horizon head
    assert _selected(cfg, "optimized_metric", task) == "val/nll"  # auto follows the monitor
    cfg = _compose("task=next_event", "optimized_metric=val/auroc")
    with pytest.raises(ValueError, match="does not report it"):
        _check_selected_metrics(cfg, instantiate(cfg.task))
    cfg = _compose("monitor=val/time_nll", "task=next_event")
    with pytest.raises(ValueError, match="val/time_nll"):
        _check_selected_metrics(cfg, instantiate(cfg.task))
    cfg = _compose("monitor=val/time_nll", "task=next_event", "model.time_to_next=true")
    assert _check_selected_metrics(cfg, instantiate(cfg.task)) == "val/time_nll"
    cfg = _compose("task=engagement_7d", "monitor=val/auroc/purchase")
    assert _check_selected_metrics(cfg, instantiate(cfg.task)) == "val/auroc/purchase"
